"""The `ralph` command line: output formats, spellings, and one clear line for every bad input.

Commands run through the real entry point (RalphGroup.main, the CLI's one error boundary) on a
real SQLite file per test; the store is then read back to prove what changed and what did not.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from ralph import open_store
from ralph.cli import app, main
from ralph.errors import EXIT_CODES

Run = Callable[..., "Result"]


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        return f"Result({self.exit_code}, out={self.stdout!r}, err={self.stderr!r})"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("RALPH_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    open_store(tmp_path / "ralph.db").close()  # reads never create a store; `ralph init` does
    return tmp_path / "ralph.db"


@pytest.fixture
def ralph(db: Path) -> Run:
    runner = CliRunner()

    def run(*args: str, input: str | None = None, db_arg: str | None = None) -> Result:
        """`ralph --db DB ARGS...` through main(): lazily built commands, real error boundary."""
        with runner.isolation(input=input) as (out, err, _):
            try:
                main(["--db", db_arg or str(db), *args])
                code = 0
            except SystemExit as exc:
                code = exc.code or 0
            sys.stdout.flush()
            sys.stderr.flush()
            return Result(code, out.getvalue().decode(), err.getvalue().decode())

    return run


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result
    return result


def add(ralph: Run, title: str, *args: str) -> str:
    return ok(ralph("add", title, "--json", *args)).json()["id"]


def snapshot(ralph: Run) -> tuple[list, list]:
    """Everything a failed command must leave as it was: the tasks and the audit log."""
    return ok(ralph("list", "--json")).json(), ok(ralph("events", "--json")).json()


def assert_one_line_error(result: Result, code: int, *words: str) -> str:
    assert result.exit_code == code, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("error: "), result
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], result
    return lines[0]


# -- output formats ---------------------------------------------------------------------------


def test_add_prints_the_new_id_and_json_prints_the_task_object(ralph: Run) -> None:
    out = ok(ralph("add", "Write the parser")).stdout
    assert out.startswith("Created rl-") and out.rstrip().endswith(": Write the parser")
    task = ok(
        ralph(
            "add",
            "Tests",
            "--json",
            "-d",
            "cover it",
            "--score",
            "4",
            "--label",
            "qa",
            "--requires",
            "python",
            "--id",
            "tests-1",
        )
    ).json()
    assert task["id"] == "tests-1"
    assert (task["description"], task["priority"], task["labels"], task["requires"]) == (
        "cover it",
        4,
        ["qa"],
        ["python"],
    )


def test_list_json_has_the_jsonl_keys_and_plain_list_shows_state(ralph: Run) -> None:
    a = add(ralph, "A")
    b = add(ralph, "B", "--blocked-by", a)
    tasks = ok(ralph("list", "--json")).json()
    keys = {
        "id",
        "title",
        "description",
        "status",
        "priority",
        "parent",
        "labels",
        "requires",
        "metadata",
        "blocked_by",
    }
    assert all(keys <= set(t) for t in tasks)
    assert [t["blocked_by"] for t in tasks] == [[], [a]]
    lines = ok(ralph("list")).stdout.splitlines()
    assert lines[0].startswith(a) and "[ready]" in lines[0]
    assert lines[1].startswith(b) and f"[blocked by {a}]" in lines[1]
    assert ok(ralph("list", "--status", "done", "--json")).json() == []


def test_ready_json_is_an_empty_array_when_nothing_is_ready(ralph: Run) -> None:
    assert ok(ralph("ready", "--json", "--limit", "1")).stdout.strip() == "[]"
    a = add(ralph, "low")
    b = add(ralph, "high", "-p", "5")
    assert [t["id"] for t in ok(ralph("ready", "--json")).json()] == [b, a]
    assert [t["id"] for t in ok(ralph("ready", "--json", "--limit", "1")).json()] == [b]


def test_ready_with_capabilities_skips_tasks_whose_requirements_are_not_met(ralph: Run) -> None:
    add(ralph, "needs gpu", "--requires", "gpu")
    plain = add(ralph, "plain")
    got = ok(ralph("ready", "--json", "--capability", "python")).json()
    assert [t["id"] for t in got] == [plain]


def test_done_reports_what_it_unblocked_in_text_and_json(ralph: Run) -> None:
    a = add(ralph, "A")
    b = add(ralph, "B", "--blocked-by", a)
    c = add(ralph, "C", "--blocked-by", a)
    out = ok(ralph("done", a)).stdout.splitlines()
    assert out == [f"Done {a}: A", f"Now unblocked: {b}", f"Now unblocked: {c}"]
    d = add(ralph, "D")
    got = ok(ralph("done", d, "--json")).json()
    assert (got["id"], got["status"], got["unblocked"]) == (d, "done", [])


def test_show_includes_relations_readiness_and_the_live_claim(ralph: Run) -> None:
    parent = add(ralph, "Parent")
    a = add(ralph, "A", "--parent", parent)
    b = add(ralph, "B", "--blocked-by", a)
    ok(ralph("claim", a, "worker-1"))
    text = ok(ralph("show", a)).stdout
    assert f"blocks:     {b} (open)" in text
    assert "claim:      worker-1 (token 1) until " in text
    assert "claimed by worker-1" in text
    assert f"children:   {a} (open)" in ok(ralph("show", parent)).stdout
    got = ok(ralph("show", b, "--json")).json()
    assert got["ready"] is False and got["blocked_by"] == [a]
    assert got["blocked_by_status"] == [{"id": a, "status": "open"}]
    assert got["claim"] is None
    assert ok(ralph("show", a, "--json")).json()["claim"]["worker"] == "worker-1"


def test_update_changes_fields_and_parent(ralph: Run) -> None:
    p = add(ralph, "P")
    a = add(ralph, "A")
    got = ok(
        ralph("update", a, "--title", "A2", "-p", "7", "--label", "x", "--parent", p, "--json")
    ).json()
    assert (got["title"], got["priority"], got["labels"], got["parent"]) == ("A2", 7, ["x"], p)
    assert ok(ralph("update", a, "--no-parent", "--json")).json()["parent"] is None
    assert ok(ralph("update", a, "--status", "cancelled", "--json")).json()["status"] == (
        "cancelled"
    )


def test_block_and_unblock_change_readiness(ralph: Run) -> None:
    a, b = add(ralph, "A"), add(ralph, "B")
    ok(ralph("block", b, a))
    assert [t["id"] for t in ok(ralph("ready", "--json")).json()] == [a]
    ok(ralph("unblock", b, a))
    assert [t["id"] for t in ok(ralph("ready", "--json")).json()] == [a, b]


def test_claim_prints_holder_and_lease_end_and_renew_prints_the_count(ralph: Run) -> None:
    a = add(ralph, "A")
    out = ok(ralph("claim", a, "worker-1", "--lease", "90s")).stdout
    assert out.startswith(f"Claimed {a} for worker-1 (token 1) until ")
    assert "(1m30s left)" in out
    out = ok(ralph("claim:renew", a, "worker-1")).stdout
    assert out.startswith(f"Renewed {a} for worker-1 until ") and "(renewal 1)" in out
    claim = ok(ralph("claim:show", a, "--json")).json()
    assert (claim["worker"], claim["renewals"], claim["lease_seconds"]) == ("worker-1", 1, 90)
    assert "token 1" in ok(ralph("claim:show", a)).stdout


def test_a_bare_lease_number_is_minutes(ralph: Run) -> None:
    a = add(ralph, "A")
    assert ok(ralph("claim", a, "w", "--lease", "45", "--json")).json()["lease_seconds"] == 2700


def test_claim_spaced_spellings_match_the_colon_commands(ralph: Run) -> None:
    a, b = add(ralph, "A"), add(ralph, "B")
    ok(ralph("claim", a, "w1"))
    assert "renewal 1" in ok(ralph("claim", "renew", a, "w1")).stdout
    assert "w1" in ok(ralph("claim", "show", a)).stdout
    assert ok(ralph("claim", "release", a, "w1")).stdout.strip() == f"Released {a} (w1)"
    ok(ralph("claim", b, "w2", "--lease", "0.1s"))
    time.sleep(0.2)  # let the 0.1 s lease run out
    assert [c["task_id"] for c in ok(ralph("claim", "expired", "--json")).json()] == [b]
    assert f"on {b} (worker w2)" in ok(ralph("claim", "expire")).stdout
    ok(ralph("claim", a, "w3"))
    ok(ralph("claim", b, "w3"))
    out = ok(ralph("claim", "release-worker", "w3")).stdout
    assert f"Released {a}" in out and f"Released {b}" in out
    assert ok(ralph("claim:show", a, "--json")).stdout.strip() == "null"


def test_claim_expire_with_an_id_expires_just_that_claim(ralph: Run) -> None:
    a, b = add(ralph, "A"), add(ralph, "B")
    ok(ralph("claim", a, "w1", "--lease", "0.1s"))
    ok(ralph("claim", b, "w2", "--lease", "0.1s"))
    time.sleep(0.2)
    ok(ralph("claim:expire", "1"))
    assert [c["task_id"] for c in ok(ralph("claim:expired", "--json")).json()] == [b]


def test_worker_list_prints_the_seed_format(ralph: Run, db: Path) -> None:
    with open_store(db) as store:
        idle = store.register_worker("implementer-1")
        busy = store.register_worker("implementer-2")
        store.heartbeat(busy.id, status="busy", current_task="rl-task001")
        gone = store.register_worker("implementer-3")
        store.stop_worker(gone.id, stopped=True)
    assert ok(ralph("worker", "list")).stdout.splitlines() == [
        "Workers:",
        f"  {idle.id} [idle] implementer-1",
        f"  {busy.id} [busy] implementer-2 → rl-task001",
    ]
    assert f"  {gone.id} [stopped] implementer-3" in ok(ralph("worker", "list", "--all")).stdout
    names = [w["name"] for w in ok(ralph("worker", "list", "--json")).json()]
    assert names == ["implementer-1", "implementer-2"]
    assert "Asked implementer-1" in ok(ralph("worker", "stop", "implementer-1")).stdout


def test_events_show_the_audit_log_of_a_task(ralph: Run) -> None:
    a, b = add(ralph, "A"), add(ralph, "B")
    ok(ralph("claim", a, "w1"))
    ok(ralph("done", a))
    kinds = [e["kind"] for e in ok(ralph("events", "--task", a, "--json")).json()]
    assert kinds == ["created", "claimed", "released", "done"]
    assert [e["task_id"] for e in ok(ralph("events", "--json", "--limit", "1")).json()] == [a]
    text = ok(ralph("events", "--task", b)).stdout
    assert "created" in text and b in text


def test_version_and_help(ralph: Run) -> None:
    from ralph import __version__
    from ralph.store.migrate import latest

    shown = ok(ralph("--version")).stdout.strip()
    assert shown == f"ralph {__version__} (store schema {latest('sqlite')})"
    text = ok(ralph("--help")).stdout
    assert "claim:release" in text and "Exit codes:" in text


def _commands(group, path=()):
    for name, command in sorted(getattr(group, "commands", {}).items()):
        yield (*path, name), command
        yield from _commands(command, (*path, name))


def test_every_command_has_help_with_an_example(ralph: Run) -> None:
    commands = list(_commands(get_command(app)))
    assert {("add",), ("claim:release",), ("worker", "list")} <= {p for p, _ in commands}
    for path, command in commands:
        result = ok(ralph(*path, "--help"))
        assert (command.help or "").strip(), path
        if not hasattr(command, "commands"):
            assert "Example" in result.stdout, path


# -- add --from ---------------------------------------------------------------------------


def test_list_json_round_trips_through_add_from(ralph: Run, tmp_path: Path) -> None:
    a = add(ralph, "A", "-p", "3", "--label", "x")
    add(ralph, "B", "--blocked-by", a, "-d", "desc")
    ok(ralph("done", a))
    before = ok(ralph("list", "--json")).json()
    jsonl = tmp_path / "tasks.jsonl"
    jsonl.write_text("\n".join(json.dumps(t) for t in before) + "\n")
    other = str(tmp_path / "other.db")
    assert "Added 2 tasks" in ok(ralph("add", "--from", str(jsonl), db_arg=other)).stdout
    after = ok(ralph("list", "--json", db_arg=other)).json()
    fields = ("id", "title", "description", "status", "priority", "labels", "blocked_by", "ready")
    assert [[t[f] for f in fields] for t in after] == [[t[f] for f in fields] for t in before]


def test_add_from_stdin_accepts_a_json_array(ralph: Run) -> None:
    data = json.dumps([{"id": "a", "title": "A"}, {"id": "b", "title": "B", "blocked_by": ["a"]}])
    got = ok(ralph("add", "--from", "-", "--json", input=data)).json()
    assert [(t["id"], t["blocked_by"]) for t in got] == [("a", []), ("b", ["a"])]


# -- bad input: one line, a documented exit code, nothing changed ------------------------------


def _expired_claim(ralph: Run) -> str:
    a = add(ralph, "A")
    ok(ralph("claim", a, "w1", "--lease", "0.1s"))
    time.sleep(0.2)  # the lease runs out
    return a


BAD_INPUTS: dict[str, tuple[Callable[[Run], list[str]], int, str]] = {
    "unknown id (show)": (lambda r: ["show", "rl-nope"], 3, "rl-nope"),
    "unknown id (done)": (lambda r: ["done", "rl-nope"], 3, "rl-nope"),
    "unknown id (claim)": (lambda r: ["claim", "rl-nope", "w1"], 3, "rl-nope"),
    "unknown status (list)": (lambda r: ["list", "--status", "finished"], 2, "finished"),
    "unknown status (update)": (lambda r: ["update", add(r, "A"), "-s", "finished"], 2, "open"),
    "done twice": (
        lambda r: ["done", ok(r("done", add(r, "A"))).stdout.split()[1][:-1]],
        6,
        "is done",
    ),
    "blocked by itself": (lambda r: ["block", (a := add(r, "A")), a], 6, "itself"),
    "dependency cycle": (
        lambda r: ["block", (a := add(r, "A")), add(r, "B", "--blocked-by", a)],
        6,
        "waits on",
    ),
    "claim of a done task": (
        lambda r: ["claim", ok(r("done", add(r, "A"))).stdout.split()[1][:-1], "w1"],
        6,
        "done",
    ),
    "claim of a blocked task": (
        lambda r: ["claim", add(r, "B", "--blocked-by", add(r, "A")), "w1"],
        6,
        "blocked by",
    ),
    "claim of a held task": (
        lambda r: ["claim", ok(r("claim", add(r, "A"), "w1", "--json")).json()["task_id"], "w2"],
        4,
        "already claimed by w1",
    ),
    "renew by a non-holder": (
        lambda r: [
            "claim:renew",
            ok(r("claim", add(r, "A"), "w1", "--json")).json()["task_id"],
            "w2",
        ],
        5,
        "claimed by w1, not w2",
    ),
    "release by a non-holder": (
        lambda r: [
            "claim:release",
            ok(r("claim", add(r, "A"), "w1", "--json")).json()["task_id"],
            "w2",
        ],
        5,
        "claimed by w1, not w2",
    ),
    "renew after expiry": (lambda r: ["claim:renew", _expired_claim(r), "w1"], 5, "expired"),
    "release after expiry": (lambda r: ["claim:release", _expired_claim(r), "w1"], 5, "expired"),
    "done with a stale token": (
        lambda r: ["done", _expired_claim(r), "--token", "1"],
        5,
        "expired",
    ),
    "zero lease": (lambda r: ["claim", add(r, "A"), "w1", "--lease", "0"], 2, "lease"),
    "negative lease": (lambda r: ["claim", add(r, "A"), "w1", "--lease", "-5"], 2, "lease"),
    "unparsable lease": (lambda r: ["claim", add(r, "A"), "w1", "--lease", "soon"], 2, "soon"),
    "expire a live claim": (
        lambda r: ["claim:expire", str(ok(r("claim", add(r, "A"), "w1", "--json")).json()["id"])],
        6,
        "still live",
    ),
    "expire an unknown claim": (lambda r: ["claim:expire", "999"], 3, "999"),
    "unblock without a dependency": (lambda r: ["unblock", add(r, "A"), add(r, "B")], 3, "not"),
    "stop an unknown worker": (lambda r: ["worker", "stop", "nobody"], 3, "nobody"),
    "missing argument": (lambda r: ["claim", add(r, "A")], 2, "WORKER"),
    "unknown option": (lambda r: ["list", "--colour"], 2, "--colour"),
    "unknown command": (lambda r: ["finish", "rl-x"], 2, "finish"),
    "title and --from": (lambda r: ["add", "T", "--from", "x.jsonl"], 2, "--from"),
    "missing --from file": (lambda r: ["add", "--from", "no-such.jsonl"], 2, "no-such.jsonl"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_with_its_exit_code_and_changes_nothing(
    ralph: Run, case: str
) -> None:
    make_args, code, word = BAD_INPUTS[case]
    add(ralph, "bystander", "--label", "keep")
    args = make_args(ralph)
    before = snapshot(ralph)
    assert_one_line_error(ralph(*args), code, word)
    assert snapshot(ralph) == before
    assert code in EXIT_CODES


MALFORMED_JSONL = {
    "invalid JSON": ('{"title": "ok"}\n\n{"title": "broken"\n', "line 3", 2),
    "not an object": ('{"title": "ok"}\n["a list"]\n', "line 2", 2),
    "missing title": ('{"title": "ok"}\n{"description": "no title"}\n', "line 2", 2),
    "bad priority": ('{"title": "ok"}\n{"title": "x", "priority": "high"}\n', "line 2", 2),
    "unknown blocker": ('{"title": "x", "blocked_by": ["rl-ghost"]}\n', "rl-ghost", 3),
    "cycle": (
        '{"id": "a", "title": "A", "blocked_by": ["b"]}\n'
        '{"id": "b", "title": "B", "blocked_by": ["a"]}\n',
        "cycle",
        6,
    ),
    "duplicate id": ('{"id": "a", "title": "A"}\n{"id": "a", "title": "A again"}\n', "twice", 2),
    "existing id": ('{"id": "keep-1", "title": "A"}\n', "already exists", 2),
    "bad field in an array": ('[{"title": "A"}, {"title": "B", "priority": "high"}]', "item 2", 2),
    "not an object in an array": ('[{"title": "A"}, 7]', "item 2", 2),
}


@pytest.mark.parametrize("case", list(MALFORMED_JSONL))
def test_malformed_jsonl_names_the_problem_and_writes_nothing(
    ralph: Run, tmp_path: Path, case: str
) -> None:
    text, word, code = MALFORMED_JSONL[case]
    add(ralph, "bystander", "--id", "keep-1")
    path = tmp_path / "tasks.jsonl"
    path.write_text(text)
    before = snapshot(ralph)
    assert_one_line_error(ralph("add", "--from", str(path)), code, word)
    assert snapshot(ralph) == before


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(ralph: Run, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    before = junk.read_bytes()
    for args in (["list"], ["add", "T"], ["ready", "--json"]):
        line = assert_one_line_error(ralph(*args, db_arg=str(junk)), 7, "not a SQLite database")
        assert "--db" in line  # the hint says how to fix it
    assert junk.read_bytes() == before


@pytest.mark.parametrize("url", ["foo://bar/db", "mysql://localhost/ralph"])
def test_a_malformed_db_url_is_refused(ralph: Run, url: str) -> None:
    assert_one_line_error(ralph("list", db_arg=url), 7, "unsupported database URL")


def test_debug_shows_the_traceback(ralph: Run) -> None:
    result = ralph("--debug", "show", "rl-nope")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: no task with id")


HOT_COMMANDS = [
    ["ready", "--json", "--limit", "1"],
    ["claim", "t1", "w1"],
    ["claim:release", "t1", "w1"],
    ["done", "t1"],
    ["add", "another"],
]


def test_hot_commands_do_not_import_rich_git_or_jinja2(db: Path) -> None:
    """The loop's per-task commands start as fast as typer allows: no heavy imports, and of
    the command modules only the invoked command's own."""
    import subprocess

    with open_store(db) as store:
        store.add("hot", id="t1")
    probe = (
        "import sys\nfrom ralph.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'rich', 'git', 'jinja2', 'pydantic', 'tenacity', 'psycopg', 'psutil', 'msgspec'})\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
        "cli = sorted(m for m in sys.modules if m.startswith('ralph.cli.'))\n"
        "print('CLI', cli, file=sys.stderr)\n"
    )
    for args in HOT_COMMANDS:
        run = subprocess.run(
            [sys.executable, "-c", probe, "--db", str(db), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "HEAVY []" in run.stderr, (args, run.stderr)
        own = "claims" if args[0].startswith("claim") else "tasks"
        loaded = sorted(["ralph.cli.common", f"ralph.cli.{own}"])
        assert f"CLI {loaded}" in run.stderr, (args, run.stderr)
