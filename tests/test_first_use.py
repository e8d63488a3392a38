"""First use under concurrency: ralph processes started at the same moment on a store that does
not exist yet all succeed, on SQLite and on PostgreSQL. A read that comes before any writer
made the store succeeds by refusing in one line (exit 7): reads never create a store.

Each process imports the CLI first and starts its command when the test opens a gate, once
every process is ready (tests/fixtures/run_ralph.py --gate), so they reach the store together
instead of staggered by their import times, on a loaded machine too. Before creating the
schema was made to wait for the lock, 4 `ralph worker start` on a missing SQLite store failed
with "database is locked" in 2 of 20 rounds; before worktree setup took the repository's
lock, with `git worktree add` in 2 to 3 rounds of 40. The suite runs 10 rounds on SQLite and 8
on PostgreSQL (8 processes each): together they would have caught either race with odds of
about 9 in 10; `RALPH_FIRST_USE_ROUNDS=40` runs more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ralph.store import migrate, open_store

FIXTURES = Path(__file__).parent / "fixtures"
SQLITE_ROUNDS = int(os.environ.get("RALPH_FIRST_USE_ROUNDS", 10))
PG_ROUNDS = int(os.environ.get("RALPH_FIRST_USE_ROUNDS", 8))
# What starts at once: the commands a user or a script runs first in a new project, two
# persistent workers among them (they also set up their git worktrees at the same moment).
WORKER = ["worker", "start", "--agent-cmd", "true", "--max-time", "200ms", "-q"]
COMMANDS = [
    WORKER,
    ["add", "written at first use"],
    WORKER,
    ["ready", "--json"],
    # a run in the checkout refuses to start beside worker processes (ralph/runlock.py): this
    # one works in a worktree of its own, as the workers do
    ["run", "--agent-cmd", "true", "-q", "--names", "first-run"],
    ["list"],
    ["worker", "list"],
    ["add", "written at first use"],
]


def start_at_once(count: int, cwd: Path, db: str | None) -> list[tuple[list[str], int, str]]:
    """Start `count` ralph processes (cycling through COMMANDS) at one moment; their outcomes."""
    gate = cwd.parent / f"{cwd.name}.gate"
    gate.mkdir()
    procs = []
    for n in range(count):
        args = COMMANDS[n % len(COMMANDS)]
        argv = [sys.executable, str(FIXTURES / "run_ralph.py"), "-", "--gate", str(gate), "--"]
        argv += [*(["--db", db] if db else []), *args]
        procs.append(
            (
                args,
                subprocess.Popen(
                    argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                ),
            )
        )
    deadline = time.monotonic() + 120
    while len(list(gate.glob("ready.*"))) < count:  # every process imported, waiting
        assert time.monotonic() < deadline, "ralph processes never got ready"
        assert all(proc.poll() is None for _, proc in procs), "a process ended before the gate"
        time.sleep(0.01)
    (gate / "go").write_text("")
    outcomes = []
    for args, proc in procs:
        _, err = proc.communicate(timeout=300)
        outcomes.append((args, proc.returncode, err.strip()))
    return outcomes


def refused_read(args: list[str], rc: int, err: str) -> bool:
    """A read that ran before any writer created the store: it creates none (exit 7)."""
    read = args[0] in ("ready", "list") or args[:2] == ["worker", "list"]
    return read and rc == 7 and "no task store at" in err


def loops(count: int) -> int:
    """How many of the first `count` commands register a worker (`run`, `worker start`)."""
    return sum(a[0] == "run" or a[:2] == ["worker", "start"] for a in COMMANDS[:count])


def adds(count: int) -> int:
    return sum(a[0] == "add" for a in COMMANDS[:count])


def new_repo(folder: Path) -> Path:
    folder.mkdir(parents=True)
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    return folder


@pytest.mark.slow  # many rounds: the races it guards against showed in 2 of 20
def test_four_processes_on_a_missing_sqlite_store_all_succeed(tmp_path: Path):
    failures = []
    for n in range(SQLITE_ROUNDS):
        repo = new_repo(tmp_path / f"round{n}")
        outcomes = start_at_once(4, repo, db=None)  # the default store, .ralph/ralph.db
        failures += [
            (n, args, rc, err)
            for args, rc, err in outcomes
            if rc != 0 and not refused_read(args, rc, err)
        ]
        with open_store(repo / ".ralph" / "ralph.db", upgrade=False) as store:
            assert store.schema.version == migrate.latest("sqlite")
            assert [t.title for t in store.list()] == ["written at first use"] * adds(4)
            assert len(store.workers()) == loops(4)
    assert failures == []


@pytest.mark.slow  # many rounds of 8 processes
def test_eight_processes_on_an_empty_postgres_database_all_succeed(
    tmp_path: Path, pg_server, request: pytest.FixtureRequest
):
    failures = []
    for n in range(PG_ROUNDS):
        url = pg_server.fresh_database(f"t_first_use_{n}_{abs(hash(request.node.name)) % 10**6}")
        try:
            repo = new_repo(tmp_path / f"round{n}")
            outcomes = start_at_once(8, repo, db=url)
            failures += [
                (n, args, rc, err)
                for args, rc, err in outcomes
                if rc != 0 and not refused_read(args, rc, err)
            ]
            with open_store(url, upgrade=False) as store:
                assert store.schema.version == migrate.latest("postgres")
                titles = [t.title for t in store.list()]
                assert titles == ["written at first use"] * adds(8)
                assert len(store.workers()) == loops(8)
        finally:
            pg_server.drop_database(url)
    assert failures == []
