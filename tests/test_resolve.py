"""Conflict resolution by an agent (ralph/resolve.py), through the real `ralph run` CLI: real
worktrees, real git merges, a real agent process (tests/agents/resolves.py) that keeps both
sides of a conflict. A barrier makes every task edit the same line before the first one lands,
so the conflicts happen every time, not by luck."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from gitutil import check_history, git, init_repo
from pgserver import in_ci

from ralph.config import parse_settings
from ralph.errors import ConfigError
from ralph.sandbox import bwrap
from ralph.store import open_store

RALPH = [sys.executable, "-m", "ralph"]
AGENT = Path(__file__).parent / "agents" / "resolves.py"
_exe, _why = bwrap.probe()
needs_bwrap = pytest.mark.skipif(
    _why is not None and not in_ci(), reason=f"the sandbox cannot run here: {_why}"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", {"shared.txt": "start\n"})


def run(
    repo: Path, db: str, workers: int, *args: str, config: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    (repo.parent / "ralph.toml").write_text('backoff = "0.1s"\npoll = "0.1s"\n' + config)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RALPH_", "RESOLVES_"))}
    base.update(HOME=str(repo.parent / "home"), RALPH_DB=db, RALPH_SANDBOX="off")
    argv = [*RALPH, "run", "--workers", str(workers), "--no-live"]
    argv += ["--config", str(repo.parent / "ralph.toml")]
    argv += ["--agent-cmd", shlex.join([sys.executable, str(AGENT)]), *args]
    return subprocess.run(
        argv, cwd=repo, env={**base, **env}, capture_output=True, text=True, timeout=300
    )


def add_tasks(db: str, n: int) -> list[str]:
    with open_store(db) as store:
        specs = [{"id": f"t{i}", "title": f"append t{i}"} for i in range(1, n + 1)]
        return [t.id for t in store.add_many(specs)]


def no_markers_ever_landed(repo: Path) -> None:
    """Not one commit on main, ever, holds a conflict marker."""
    revs = git(repo, "rev-list", "main").split()
    found = subprocess.run(
        ["git", "grep", "-l", "-e", "<<<<<<<", "-e", ">>>>>>>", *revs],
        cwd=repo, capture_output=True, text=True,
    )  # fmt: skip
    assert found.returncode == 1 and found.stdout == "", found.stdout


def task_commits(repo: Path, base: str) -> list[dict[str, str]]:
    rows = []
    for sha in git(repo, "rev-list", "--reverse", f"{base}..main").split():
        body = git(repo, "show", "-s", "--format=%B", sha)
        trailers = dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)
        rows.append({"sha": sha, **trailers})
    return rows


@pytest.mark.parametrize(
    ("backend", "sandbox"),
    [
        ("sqlite", "off"),
        ("postgres", "off"),
        pytest.param("sqlite", "on", marks=needs_bwrap),
    ],
)
def test_three_tasks_appending_the_same_line_land_with_two_resolutions_and_no_rerun(
    repo: Path, tmp_path: Path, backend: str, sandbox: str, request: pytest.FixtureRequest
) -> None:
    db = str(tmp_path / "ralph.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    tasks = add_tasks(db, 3)
    base = git(repo, "rev-parse", "main")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    config = f'[sandbox]\nwritable = ["{barrier}"]\n' if sandbox == "on" else ""
    done = run(
        repo, db, 3, config=config, RALPH_SANDBOX=sandbox,
        RESOLVES_BARRIER_DIR=str(barrier), RESOLVES_BARRIER="3",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    assert "Run: 3 done" in done.stdout
    assert "5 agent launches (2 merge conflicts) (2 conflict resolutions)" in done.stdout
    assert sorted(git(repo, "show", "main:shared.txt").split()) == ["start", "t1", "t2", "t3"]
    check_history(repo, base, tasks)
    made = task_commits(repo, base)
    assert sorted(c["Task"] for c in made) == tasks  # one commit per task, its trailer on it
    assert sum(1 for c in made if "Conflict-Resolved-By" in c) == 2
    assert git(repo, "rev-list", "--merges", "main") == ""  # squashed, never a merge commit
    no_markers_ever_landed(repo)
    with open_store(db) as store:
        attempts = store.attempts()
        assert {t.id: (t.status, t.attempts) for t in store.list()} == {
            t: ("done", 1) for t in tasks
        }  # a resolution is no re-run: one counted attempt each
    kinds = sorted((a.kind, a.outcome, a.counted) for a in attempts)
    assert kinds == [("resolve", "success", False)] * 2 + [("task", "success", True)] * 3
    assert len(attempts) <= 5
    for a in attempts:
        result = json.loads((Path(a.run_dir or "") / "result.json").read_text())
        assert result["kind"] == a.kind
        if a.kind == "resolve":
            prompt = (Path(a.run_dir or "") / "prompt.md").read_text()
            assert "MERGE_HEAD" in prompt and "shared.txt" in prompt
            assert f"{a.task_id}: append {a.task_id}" in prompt  # what the task intended
            assert result["sandbox"].startswith("sandbox: bwrap" if sandbox == "on" else "uns")
            # git in the agent's workspace (its own git view when sandboxed) shows the merge
            said = (Path(a.run_dir or "") / "stdout").read_text()
            before = [b for b in attempts if b.task_id == a.task_id and b.id < a.id]
            run_no = Path(max(before, key=lambda b: b.id).run_dir or "").name
            ours = git(repo, "rev-parse", f"refs/ralph/attempts/{a.task_id}/{run_no}-result")
            assert f"MERGE_HEAD: {ours}\n" in said and "unmerged: shared.txt\n" in said
    assert git(repo, "show", "main:shared.txt") == (repo / "shared.txt").read_text().strip()


def test_a_resolution_that_leaves_markers_sends_the_task_back_and_no_marker_ever_lands(
    repo: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    tasks = add_tasks(db, 2)
    base = git(repo, "rev-parse", "main")
    done = run(
        repo, db, 2, RESOLVES_BARRIER_DIR=str(tmp_path / "barrier"), RESOLVES_BARRIER="2",
        RESOLVES_LEAVE_MARKERS="1",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    with open_store(db) as store:
        attempts = store.attempts()
        loser = next(a.task_id for a in attempts if a.kind == "resolve")
        history = [(a.kind, a.outcome) for a in store.attempts(loser)]
        assert {t.status for t in store.list()} == {"done"}
        last_error = store.get(loser).last_error or ""
    # the conflict, the resolution that left markers, then a full re-run that landed
    assert history == [
        ("task", "merge_conflict"),
        ("resolve", "markers_left"),
        ("task", "success"),
    ]
    assert "conflict markers left in shared.txt" in last_error
    resolution = next(a for a in attempts if a.kind == "resolve")
    assert not resolution.counted
    assert "<<<<<<<" in (Path(resolution.run_dir or "") / "changes.patch").read_text()  # kept
    check_history(repo, base, tasks)
    no_markers_ever_landed(repo)
    assert sorted(git(repo, "show", "main:shared.txt").split()) == ["start", "t1", "t2"]


def test_a_resolution_agent_that_fails_falls_back_to_a_rerun(repo: Path, tmp_path: Path) -> None:
    db = str(tmp_path / "ralph.db")
    tasks = add_tasks(db, 2)
    base = git(repo, "rev-parse", "main")
    done = run(
        repo, db, 2, RESOLVES_BARRIER_DIR=str(tmp_path / "barrier"), RESOLVES_BARRIER="2",
        RESOLVES_FAIL="1",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    with open_store(db) as store:
        resolution = next(a for a in store.attempts() if a.kind == "resolve")
        assert (resolution.outcome, resolution.counted) == ("agent_error", False)
        assert store.get(resolution.task_id).attempts == 1  # its re-run's; nothing else counted
    check_history(repo, base, tasks)
    no_markers_ever_landed(repo)
    # nothing of the failed resolution is left in the worktree or mid-merge
    for tree in (repo / ".ralph" / "worktrees").iterdir():
        assert git(tree, "status", "--porcelain") == ""
        assert not Path(
            git(tree, "rev-parse", "--path-format=absolute", "--git-path", "MERGE_HEAD")
        ).exists()


def test_resolve_rerun_runs_the_task_again_and_launches_no_resolution(
    repo: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    tasks = add_tasks(db, 2)
    base = git(repo, "rev-parse", "main")
    done = run(
        repo, db, 2, "--resolve", "rerun",
        RESOLVES_BARRIER_DIR=str(tmp_path / "barrier"), RESOLVES_BARRIER="2",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 agent launches (1 merge conflicts)" in done.stdout
    with open_store(db) as store:
        assert [a.kind for a in store.attempts()] == ["task"] * 3
    check_history(repo, base, tasks)


def test_a_project_resolve_template_overrides_the_built_in_one(repo: Path, tmp_path: Path):
    (repo / "prompts").mkdir()
    (repo / "prompts" / "resolve.md.j2").write_text(
        "PROJECT RESOLVE {{ task.id }} in {{ files | join(',') }} on {{ target }}\n"
    )
    git(repo, "add", "prompts")
    git(repo, "commit", "-q", "-m", "own resolve template")
    db = str(tmp_path / "ralph.db")
    add_tasks(db, 2)
    done = run(repo, db, 2, RESOLVES_BARRIER_DIR=str(tmp_path / "b"), RESOLVES_BARRIER="2")

    assert done.returncode == 0, done.stderr[-3000:]
    with open_store(db) as store:
        resolution = next(a for a in store.attempts() if a.kind == "resolve")
    prompt = (Path(resolution.run_dir or "") / "prompt.md").read_text()
    assert prompt == f"PROJECT RESOLVE {resolution.task_id} in shared.txt on main\n"


def test_a_broken_resolve_template_or_unknown_mode_is_refused_before_anything_runs(
    repo: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    add_tasks(db, 1)
    (repo / "prompts").mkdir()
    (repo / "prompts" / "resolve.md.j2").write_text("{{ no_such_field }}\n")
    broken = run(repo, db, 2)
    assert broken.returncode == ConfigError.exit_code, broken.stderr
    assert "resolve.md.j2" in broken.stderr and len(broken.stderr.strip().splitlines()) == 1
    wrong = run(repo, db, 2, "--resolve", "maybe")
    assert wrong.returncode != 0 and "--resolve" in wrong.stderr
    with open_store(db) as store:
        assert store.attempts() == []


def test_merge_settings_are_checked_and_default_to_an_agent_resolving():
    assert parse_settings({}).merge.resolve == "agent"
    found = parse_settings({"merge": {"resolve": "rerun", "agent": "codex"}}).merge
    assert (found.resolve, found.agent, found.prompt) == ("rerun", "codex", None)
    for bad in ({"resolve": "sometimes"}, {"agent": ""}, {"colour": "red"}, "agent"):
        with pytest.raises(ConfigError, match="merge"):
            parse_settings({"merge": bad})


def test_show_stats_report_and_the_web_task_page_name_the_resolution_attempt(
    repo: Path, tmp_path: Path
) -> None:
    from webutil import request, serve

    db = str(tmp_path / "ralph.db")
    add_tasks(db, 2)
    done = run(repo, db, 2, RESOLVES_BARRIER_DIR=str(tmp_path / "b"), RESOLVES_BARRIER="2")
    assert done.returncode == 0, done.stderr[-3000:]
    with open_store(db) as store:
        loser = next(a.task_id for a in store.attempts() if a.kind == "resolve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
    env.update(HOME=str(tmp_path / "home"), RALPH_DB=db)

    def cli(*args: str) -> str:
        out = subprocess.run([*RALPH, *args], cwd=repo, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    shown = json.loads(cli("show", loser, "--json"))
    assert (shown["attempts"], shown["launches"], shown["resolutions"]) == (1, 2, 1)
    assert "1 (2 agent launches, 1 conflict resolution)" in cli("show", loser)
    stats = json.loads(cli("stats", "--by", "kind", "--json"))
    groups = {g["key"]: (g["attempts"], g["launches"]) for g in stats["groups"]}
    assert groups == {"resolve": (0, 1), "task": (2, 2)}
    assert stats["total"]["resolutions"] == 1
    report = json.loads(cli("report", "--format", "json"))
    assert report["resolutions"] == 1
    assert [t["resolutions"] for t in report["landed"] if t["id"] == loser] == [1]
    assert "1 conflict resolutions" in cli("report")
    with serve(repo, env) as (_, base):
        status, _, page = request(base, "GET", f"/tasks/{loser}")
    assert status == 200
    assert page.count('<td class="kind">resolve</td>') == 1
    assert page.count('<td class="kind">task</td>') == 1


def test_a_worker_killed_while_its_agent_resolves_leaves_no_merge_behind_and_the_next_run_lands(
    repo: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    tasks = add_tasks(db, 2)
    base = git(repo, "rev-parse", "main")
    flag = tmp_path / "kill-once"
    flag.write_text("")
    barrier = {"RESOLVES_BARRIER_DIR": str(tmp_path / "b"), "RESOLVES_BARRIER": "2"}
    killed = run(repo, db, 2, "--names", "w1,w2", RESOLVES_KILL_ONCE=str(flag), **barrier)
    assert killed.returncode == -9 and not flag.exists(), killed.stderr[-2000:]
    with open_store(db) as store:
        resolving = next(a for a in store.attempts() if a.kind == "resolve")
        assert resolving.ended_at is None  # its worker died with it
    trees = [t for t in (repo / ".ralph" / "worktrees").iterdir() if t.is_dir()]
    merging = [
        t
        for t in trees
        if Path(git(t, "rev-parse", "--path-format=absolute", "--git-path", "MERGE_HEAD")).exists()
    ]
    assert len(merging) == 1  # the kill left the merge in progress, markers in the files

    again = run(repo, db, 2, "--names", "w1,w2", **barrier)

    assert again.returncode == 0, again.stderr[-3000:]
    check_history(repo, base, tasks)
    no_markers_ever_landed(repo)
    assert sorted(git(repo, "show", "main:shared.txt").split()) == ["start", "t1", "t2"]
    with open_store(db) as store:
        assert {t.status for t in store.list()} == {"done"}
        closed = next(a for a in store.attempts() if a.id == resolving.id)
        assert closed.ended_at is not None and not closed.counted
    for tree in (repo / ".ralph" / "worktrees").iterdir():  # the merge was put away, not landed
        if tree.is_dir():
            assert not Path(
                git(tree, "rev-parse", "--path-format=absolute", "--git-path", "MERGE_HEAD")
            ).exists()
            assert git(tree, "status", "--porcelain") == ""


def test_merge_agent_names_another_configured_agent_for_resolutions(repo: Path, tmp_path: Path):
    db = str(tmp_path / "ralph.db")
    add_tasks(db, 2)
    fixer = json.dumps([sys.executable, str(AGENT)])
    config = f'[merge]\nagent = "fixer"\n[agents.fixer]\ncommand = {fixer}\n'
    done = run(
        repo, db, 2, config=config,
        RESOLVES_BARRIER_DIR=str(tmp_path / "b"), RESOLVES_BARRIER="2",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    with open_store(db) as store:
        ran = sorted((a.kind, a.agent) for a in store.attempts())
        resolution = next(a for a in store.attempts() if a.kind == "resolve")
    assert ran == [("resolve", "fixer"), ("task", "command"), ("task", "command")]
    result = json.loads((Path(resolution.run_dir or "") / "result.json").read_text())
    assert (result["agent"], result["outcome"]) == ("fixer", "success")
    last = git(repo, "log", "-1", "--format=%(trailers:key=Conflict-Resolved-By,valueonly)")
    assert last.strip() == "fixer"


FAILS_ON_BOTH_ONCE = """
import os, sys
from pathlib import Path
lines = Path("shared.txt").read_text().split()
flag = Path(os.environ["VERIFY_FLAG"])
if len(lines) >= 3 and flag.exists():
    flag.unlink()
    sys.exit("both tasks' lines: this check fails once")
"""


def test_a_resolution_that_fails_verify_never_lands_and_the_task_reruns(
    repo: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    tasks = add_tasks(db, 2)
    base = git(repo, "rev-parse", "main")
    check = tmp_path / "check.py"
    check.write_text(FAILS_ON_BOTH_ONCE)
    flag = tmp_path / "verify-flag"
    flag.write_text("")
    done = run(
        repo, db, 2, "--verify", shlex.join([sys.executable, str(check)]),
        RESOLVES_BARRIER_DIR=str(tmp_path / "b"), RESOLVES_BARRIER="2", VERIFY_FLAG=str(flag),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    assert not flag.exists()  # the resolved result was verified, and failed
    with open_store(db) as store:
        resolution = next(a for a in store.attempts() if a.kind == "resolve")
        history = [(a.kind, a.outcome) for a in store.attempts(resolution.task_id)]
    assert history == [
        ("task", "merge_conflict"),
        ("resolve", "verify_failed"),
        ("task", "success"),
    ]
    assert (
        "this check fails once" in (Path(resolution.run_dir or "") / "verify-1.stderr").read_text()
    )
    check_history(repo, base, tasks)
    no_markers_ever_landed(repo)
    assert "Conflict-Resolved-By" not in git(repo, "log", "--format=%B", f"{base}..main")
