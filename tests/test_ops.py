"""The operator commands through the real CLI entry point: init, status, stats, logs, dep tree,
list --tree, NO_COLOR, shell completion and help examples. Stores are real SQLite files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from ralph import open_store
from ralph.agents.registry import SETTINGS, get_agent, known_agents
from ralph.cli import app, main
from ralph.config import Settings, load_settings, parse_settings
from ralph.ops import init as opinit
from ralph.ops.logs import follow
from ralph.prompts import builtin_prompt_path


class Result:
    def __init__(self, code: int, out: str, err: str):
        self.exit_code, self.stdout, self.stderr = code, out, err

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("RALPH_DB", "NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "proj"
    root.mkdir()
    (root / ".git").mkdir()
    monkeypatch.chdir(root)
    return root


def run(*args: str, db: Path | None = None) -> Result:
    runner = CliRunner()
    argv = ["--db", str(db), *args] if db else list(args)
    with runner.isolation() as (out, err, _):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        sys.stdout.flush()
        sys.stderr.flush()
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


# -- init ----------------------------------------------------------------------------------


def _uncommented(text: str) -> str:
    """The config with every `# key = default` line switched on (examples `## ...` stay off)."""
    return "\n".join(
        line[2:] if re.match(r"^# ([a-z_]+ = |\[agents\.)", line) else line
        for line in text.splitlines()
    )


def test_init_creates_the_project_files_and_a_store(project: Path):
    (project / "CLAUDE.md").write_text("# My project\n")
    report = ok(run("init", "--json")).json()
    assert set(report) == {"root", "created", "appended", "kept", "notes"}
    assert report["created"] == [".ralph/.gitignore", "ralph.toml", "prompts/task.md.j2"]
    assert report["appended"] == ["CLAUDE.md"]
    assert (project / ".ralph" / ".gitignore").read_text() == "*\n"
    assert (project / ".ralph" / "ralph.db").is_file()
    assert (project / "prompts/task.md.j2").read_text() == builtin_prompt_path().read_text()
    assert (project / "CLAUDE.md").read_text().startswith("# My project\n\n## Working under ralph")
    assert not (project / "AGENTS.md").exists()
    assert load_settings(project).source == str(project / "ralph.toml")


def test_init_twice_changes_nothing_and_never_overwrites(project: Path):
    (project / "AGENTS.md").write_text("rules")
    (project / "ralph.toml").write_text('agent = "codex"\n')
    ok(run("init"))
    files = {
        p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".ralph" not in p.parts
    }
    assert (project / "ralph.toml").read_text() == 'agent = "codex"\n'
    assert (project / "AGENTS.md").read_text().count("## Working under ralph") == 1
    second = ok(run("init", "--json")).json()
    assert second["created"] == [] and second["appended"] == []
    assert {p: p.read_bytes() for p in files} == files


def test_init_leaves_a_pyproject_tool_ralph_table_in_charge(project: Path):
    (project / "pyproject.toml").write_text('[tool.ralph]\nagent = "gemini"\n')
    report = ok(run("init", "--json")).json()
    assert "ralph.toml" not in report["created"] and report["notes"]
    assert load_settings(project).agent == "gemini"


def test_generated_config_loads_and_every_default_it_lists_is_the_real_default():
    text = opinit.config_template()
    assert parse_settings(tomllib.loads(text)) == Settings(source="ralph.toml")
    table = tomllib.loads(_uncommented(text))
    settings = parse_settings(dict(table))
    for name in Settings.__dataclass_fields__:
        if name not in ("source", "agents"):
            assert getattr(settings, name) == getattr(Settings(), name), name
    assert sorted(settings.agents) == known_agents()
    for name, spec in settings.agents.items():
        if name != "command":  # it has no default command; its example line shows one
            assert get_agent(name, spec).argv("p", Path("f")) == get_agent(name).argv(
                "p", Path("f")
            )


def test_generated_config_documents_every_setting_and_agent_key():
    assert set(opinit.HELP) == set(Settings.__dataclass_fields__) - {"source"}
    assert set(opinit.AGENT_HELP) == set(SETTINGS)
    text = opinit.config_template()
    for name in opinit.HELP:
        assert re.search(rf"^#+ {name} = ", text, re.MULTILINE) or name == "agents", name


# -- status --------------------------------------------------------------------------------

STATUS_KEYS = {
    "at",
    "counts",
    "ready",
    "blocked",
    "claimed",
    "retry_wait",
    "claims",
    "workers",
    "workers_gone",
    "running",
    "spend",
    "events",
    "paused",
    "pause",
}


def _busy_store(db: Path) -> None:
    with open_store(db) as s:
        a = s.add("First", id="A")
        s.add("Second", id="B", blocked_by=[a.id])
        s.add("Third", id="C")
        s.add("Fourth", id="D", status="done")
        s.claim("A", "w1", lease=600)
        w = s.register_worker("w1", pid=123, host="h")
        s.heartbeat(w.id, status="busy", current_task="A")
        one = s.start_attempt("C", attempt=1, worker="w1", agent="claude")
        s.finish_attempt(
            one.id, outcome="success", cost_usd=0.5, input_tokens=1000, output_tokens=200
        )
        s.start_attempt("A", attempt=1, worker="w1", agent="claude")


def test_status_json_has_stable_keys_counts_claims_and_spend(project: Path):
    db = project / "s.db"
    _busy_store(db)
    snap = ok(run("status", "--json", db=db)).json()
    assert set(snap) == STATUS_KEYS
    assert snap["counts"] == {
        "open": 3,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
        "review": 0,
        "total": 4,
    }
    assert (snap["ready"], snap["blocked"], snap["claimed"]) == (1, 1, 1)
    (claim,) = snap["claims"]
    assert set(claim) == {"task_id", "worker", "token", "expires_at", "lease_left_s", "expired"}
    assert claim["task_id"] == "A" and 0 < claim["lease_left_s"] <= 600
    assert [w["name"] for w in snap["workers"]] == ["w1"]
    assert snap["pause"] is None and snap["paused"] is None
    assert snap["spend"]["total"] == {
        "attempts": 2,
        "launches": 2,
        "cost_usd": 0.5,
        "unknown_cost": 0,
        "input_tokens": 1000,
        "output_tokens": 200,
    }
    assert snap["spend"]["today"] == snap["spend"]["total"]
    assert [a["task_id"] for a in snap["running"]] == ["A"]
    assert snap["events"][-1]["kind"] in ("worker_started", "claimed")


def test_status_text_shows_counts_claims_workers_and_spend(project: Path):
    db = project / "s.db"
    _busy_store(db)
    out = ok(run("status", db=db)).stdout
    assert "Tasks: 4" in out and "1 ready, 1 claimed, 1 blocked" in out
    assert "Spend total: $0.5000 over 2 attempts (2 agent launches)" in out
    assert "PAUSED" not in out
    assert "Claims" in out and "w1" in out and "Recent events" in out


def test_status_watch_redraws_until_interrupted_and_exits_cleanly(project: Path):
    db = project / "s.db"
    _busy_store(db)
    env = {**os.environ, "RALPH_DB": str(db), "HOME": str(project)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ralph", "status", "--watch"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = [proc.stdout.readline() for _ in range(2)]  # the first frame is out: redrawing
        assert seen[0].startswith("Tasks: 4")
        while "Recent events" not in proc.stdout.readline():
            pass
        while not proc.stdout.readline().startswith("Tasks: 4"):  # a second frame
            pass
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err == ""


# -- stats ---------------------------------------------------------------------------------

SUMMARY_KEYS = {
    "attempts",
    "running",
    "succeeded",
    "failed",
    "success_rate",
    "median_duration_s",
    "p90_duration_s",
    "total_duration_s",
    "cost_usd",
    "unknown_cost",
    "launches",
    "cost_estimated",
    "not_counted",
    "resolutions",
    "input_tokens",
    "output_tokens",
    "outcomes",
}


def _attempts(db: Path) -> None:
    clock = [1_000_000.0]
    with open_store(db, clock=lambda: clock[0]) as s:
        s.add("T1", id="T1")
        s.add("T2", id="T2")
        plan = [
            ("T1", "claude", 10, "agent_error", 0.1),
            ("T1", "claude", 20, "success", 0.2),
            ("T2", "codex", 30, "success", 0.3),
            ("T2", "codex", 40, "verify_failed", None),
            ("T2", "codex", 50, "success", 0.4),
        ]
        for n, (task, agent, seconds, outcome, cost) in enumerate(plan, 1):
            a = s.start_attempt(task, attempt=n, worker="w", agent=agent)
            clock[0] += seconds
            s.finish_attempt(
                a.id, outcome=outcome, cost_usd=cost, input_tokens=100, output_tokens=10,
                cost_estimated=agent == "codex",  # codex reports tokens only
            )  # fmt: skip


def test_stats_json_groups_by_agent_with_rates_percentiles_and_cost(project: Path):
    db = project / "s.db"
    _attempts(db)
    result = ok(run("stats", "--json", db=db)).json()
    assert set(result) == {"by", "groups", "total"}
    claude, codex = result["groups"]
    assert set(claude) == SUMMARY_KEYS | {"key"}
    assert (claude["key"], claude["attempts"], claude["success_rate"]) == ("claude", 2, 0.5)
    assert (codex["median_duration_s"], codex["p90_duration_s"]) == (40, 50)
    assert codex["cost_usd"] == pytest.approx(0.7)
    assert (claude["cost_estimated"], codex["cost_estimated"]) == (False, True)  # tokens only
    total = result["total"]
    assert (total["attempts"], total["succeeded"], total["success_rate"]) == (5, 3, 0.6)
    assert total["cost_usd"] == pytest.approx(1.0) and total["input_tokens"] == 500
    assert total["outcomes"] == {"agent_error": 1, "success": 3, "verify_failed": 1}


def test_stats_counts_no_attempt_for_a_launch_that_used_none_and_marks_estimates_by_attempt(
    project: Path,
):
    db = project / "s.db"
    _attempts(db)
    with open_store(db) as s:
        # claude rate limited: the launch used no attempt (as `show` counts it)
        a = s.start_attempt("T1", attempt=3, worker="w", agent="claude")
        s.finish_attempt(a.id, outcome="rate_limited", counted=False)
        # a named command agent whose wrapper printed tokens only, priced by ralph
        b = s.start_attempt("T1", attempt=3, worker="w", agent="mine")
        s.finish_attempt(b.id, outcome="success", cost_usd=0.05, cost_estimated=True)
    groups = {g["key"]: g for g in ok(run("stats", "--json", db=db)).json()["groups"]}
    claude, mine = groups["claude"], groups["mine"]
    assert (claude["attempts"], claude["failed"], claude["not_counted"]) == (2, 1, 1)
    assert claude["outcomes"] == {"agent_error": 1, "rate_limited": 1, "success": 1}
    assert claude["success_rate"] == 0.5 and not claude["cost_estimated"]
    assert mine["cost_estimated"] and (mine["attempts"], mine["not_counted"]) == (1, 0)


def test_stats_by_task_and_day_and_text(project: Path):
    db = project / "s.db"
    _attempts(db)
    by_task = ok(run("stats", "--by", "task", "--json", db=db)).json()
    assert [(g["key"], g["attempts"]) for g in by_task["groups"]] == [("T1", 2), ("T2", 3)]
    by_day = ok(run("stats", "--by", "day", "--json", db=db)).json()
    assert [g["key"] for g in by_day["groups"]] == [
        time.strftime("%Y-%m-%d", time.localtime(1_000_000))
    ]
    text = ok(run("stats", db=db)).stdout
    assert "codex" in text and "total" in text and "$1.0000" in text and "60%" in text
    bad = run("stats", "--by", "colour", db=db)
    assert bad.exit_code == 2 and "cannot group by 'colour'" in bad.stderr


def test_stats_on_an_empty_store_says_so(project: Path):
    open_store(project / "e.db").close()  # a read never creates the store
    assert "No attempts yet" in ok(run("stats", db=project / "e.db")).stdout


# -- logs ----------------------------------------------------------------------------------

STREAM = [
    {"type": "system", "subtype": "init", "session_id": "s1", "model": "claude-test"},
    {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "text", "text": "I will look around."},
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "Bash",
                    "input": {"command": "ls -la", "description": "list"},
                },
            ]
        },
    },
    {
        "type": "user",
        "message": {
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "x" * 5000},
            ]
        },
    },
    {
        "type": "assistant",
        "message": {
            "content": [
                {
                    "type": "tool_use",
                    "id": "t2",
                    "name": "Edit",
                    "input": {"file_path": "src/a.py", "old_string": "a"},
                },
            ]
        },
    },
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "All done.",
        "total_cost_usd": 0.0123,
        "num_turns": 3,
        "usage": {"input_tokens": 120, "output_tokens": 45},
    },
]


def _attempt_with_run_dir(project: Path, db: Path, *, finished: bool = True) -> Path:
    run_dir = project / ".ralph" / "runs" / "A" / "1"
    run_dir.mkdir(parents=True)
    (run_dir / "prompt.md").write_text("# Task A: First\n\nDo it.\n")
    (run_dir / "stdout").write_text("".join(json.dumps(e) + "\n" for e in STREAM))
    (run_dir / "stderr").write_text("a warning\n")
    (run_dir / "verify-1.stdout").write_text("3 passed\n")
    with open_store(db) as s:
        s.add("First", id="A")
        a = s.start_attempt("A", attempt=1, worker="w1", agent="claude", run_dir=str(run_dir))
        if finished:
            s.finish_attempt(a.id, outcome="success", cost_usd=0.0123)
            (run_dir / "result.json").write_text(
                json.dumps(
                    {
                        "task": "A",
                        "outcome": "success",
                        "commit": "abcdef1234567",
                        "cost_usd": 0.0123,
                        "duration_s": 4.2,
                        "note": None,
                        "exit_code": 0,
                    }
                )
            )
    return run_dir


def test_logs_render_claude_stream_json_as_readable_turns(project: Path):
    db = project / "s.db"
    _attempt_with_run_dir(project, db)
    out = ok(run("logs", "A", db=db)).stdout
    assert "A attempt 1 of 1" in out and "Do it." in out
    assert "I will look around." in out
    assert "→ Bash ls -la" in out and "→ Edit src/a.py" in out
    assert "x" * 400 in out and "x" * 401 not in out and "more characters" in out
    assert "✓ All done." in out and "cost $0.0123" in out and "3 turns" in out
    assert "a warning" in out and "3 passed" in out
    assert "success" in out and "commit abcdef1234" in out
    assert '{"type"' not in out
    assert "Do it." not in ok(run("logs", "A", "--no-prompt", db=db)).stdout


def test_logs_json_shape(project: Path):
    db = project / "s.db"
    _attempt_with_run_dir(project, db)
    log = ok(run("logs", "A", "--json", db=db)).json()
    assert set(log) == {
        "task_id",
        "attempt",
        "attempts",
        "run_dir",
        "record",
        "prompt",
        "turns",
        "stderr",
        "verify",
        "result",
    }
    kinds = [t["kind"] for t in log["turns"]]
    assert kinds == ["system", "assistant", "tool", "tool_result", "tool", "result"]
    assert log["turns"][-1]["cost_usd"] == 0.0123
    assert log["verify"] == [{"n": 1, "stdout": "3 passed\n", "stderr": ""}]
    assert log["result"]["outcome"] == "success"


def test_logs_errors_name_the_problem(project: Path):
    db = project / "s.db"
    _attempt_with_run_dir(project, db)
    ok(run("add", "Other", "--id", "B", db=db))
    for args, code, text in [
        (("logs", "nope"), 3, "no task with id 'nope' (`ralph list` shows the ids)"),
        (("logs", "B"), 3, "B has no attempts yet (`ralph run` launches agents on ready tasks)"),
        (("logs", "A", "--attempt", "2"), 3, "A has no attempt 2 (it has attempts 1 to 1)"),
    ]:
        result = run(*args, db=db)
        assert (result.exit_code, result.stderr.strip()) == (code, f"error: {text}")


def test_follow_yields_turns_as_they_are_written_until_result_json(tmp_path: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    seen: list[str] = []

    def write() -> None:
        with (run_dir / "stdout").open("w") as f:
            for event in STREAM:
                line = json.dumps(event) + "\n"
                f.write(line[:10])  # half lines must wait for their end
                f.flush()
                time.sleep(0.05)
                f.write(line[10:])
                f.flush()
        (run_dir / "result.json").write_text("{}")

    writer = threading.Thread(target=write)
    writer.start()
    for turn in follow(run_dir, poll=0.02, timeout=60):
        seen.append(turn.kind)
    writer.join()
    assert seen == ["system", "assistant", "tool", "tool_result", "tool", "result"]


def test_logs_follow_on_a_finished_attempt_prints_it_all(project: Path):
    db = project / "s.db"
    _attempt_with_run_dir(project, db)
    out = ok(run("logs", "A", "--follow", db=db)).stdout
    assert "→ Bash ls -la" in out and "success" in out


# -- trees ---------------------------------------------------------------------------------


def _graph(db: Path) -> None:
    with open_store(db) as s:
        s.add("Epic", id="E")
        s.add("Parser", id="P", parent="E")
        s.add("Tests", id="T", parent="E", blocked_by=["P"])
        s.add("Docs", id="D", blocked_by=["T"])


def test_dep_tree_shows_what_a_task_waits_on_unblocks_and_contains(project: Path):
    db = project / "s.db"
    _graph(db)
    tree = ok(run("dep", "tree", "T", "--json", db=db)).json()
    assert [n["id"] for n in tree["waits_on"]] == ["P"]
    assert [n["id"] for n in tree["unblocks"]] == ["D"]
    text = ok(run("dep", "tree", "T", db=db)).stdout
    assert "T [open] Tests" in text and "waits on" in text and "P [open] ready Parser" in text
    assert "unblocks" in text and "D [open] Docs" in text
    epic = ok(run("dep", "tree", "E", "--json", db=db)).json()
    assert [n["id"] for n in epic["children"]] == ["P", "T"]
    missing = run("dep", "tree", "nope", db=db)
    assert missing.exit_code == 3 and "no task with id 'nope'" in missing.stderr


def test_list_tree_nests_children_under_parents(project: Path):
    db = project / "s.db"
    _graph(db)
    text = ok(run("list", "--tree", db=db)).stdout
    lines = text.splitlines()
    assert lines[0].startswith("E [open] Epic")
    assert re.match(r"^[├└]── P \[open\] ready Parser", lines[1])
    assert "T [open] Tests (waits on P)" in lines[2]
    assert lines[3].startswith("D [open] Docs (waits on T)")
    forest = ok(run("list", "--tree", "--json", db=db)).json()
    assert [(n["id"], [c["id"] for c in n["children"]]) for n in forest] == [
        ("E", ["P", "T"]),
        ("D", []),
    ]


# -- colours, completion, help -------------------------------------------------------------


def test_no_color_turns_colours_off(project: Path, monkeypatch: pytest.MonkeyPatch):
    db = project / "s.db"
    _busy_store(db)
    monkeypatch.setenv("FORCE_COLOR", "1")
    coloured = ok(run("status", db=db)).stdout
    assert re.search(r"\x1b\[[0-9;]*3[0-7]m", coloured)
    monkeypatch.setenv("NO_COLOR", "1")
    plain = ok(run("status", db=db)).stdout
    assert not re.search(r"\x1b\[[0-9;]*(3[0-7]|38;|9[0-7])", plain)
    assert "Tasks: 4" in plain


def test_shell_completion_is_offered_and_completes_commands(project: Path):
    env = {**os.environ, "HOME": str(project), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = subprocess.run(
        [sys.executable, "-m", "ralph", "--show-completion", "bash"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.returncode == 0 and "_RALPH_COMPLETE=complete_bash" in script.stdout
    env.update(_RALPH_COMPLETE="complete_bash", COMP_WORDS="ralph sta", COMP_CWORD="1")
    done = subprocess.run(
        [sys.executable, "-m", "ralph"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["status", "stats"]
    assert "--install-completion" in ok(run("--help")).stdout


def test_every_operator_command_has_help_with_an_example(project: Path):
    group = get_command(app)
    names = [
        ("init",),
        ("import",),
        ("export",),
        ("status",),
        ("logs",),
        ("stats",),
        ("dep",),
        ("dep", "tree"),
        ("list",),
    ]
    for path in names:
        text = ok(run(*path, "--help")).stdout
        assert "Example" in text, path
    assert {"init", "import", "export", "status", "logs", "stats", "dep"} <= set(group.commands)
