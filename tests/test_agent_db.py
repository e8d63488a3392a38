"""The RALPH_DB an agent is given works from where the agent runs, on both backends.

A real `ralph run` launches tests/agents/uses_ralph.py, which calls the real `ralph` CLI
(`show`, `add --discovered-from`, `list --json`) from its cwd: the checkout with one worker, a
worker's own git worktree with `-w 2`. Before, a relative SQLite path given with --db named a
new empty store inside the worktree, and a PostgreSQL URL reached the agent with its password
replaced by ***. The password must still appear nowhere ralph writes: its output and `.ralph/`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ralph.store import open_store
from tests.support.clis import clean_env, git_repo, ralph, task_commits

AGENT = Path(__file__).parent / "agents" / "uses_ralph.py"
PASSWORD = "agent-pw-7f3e"


def with_password(url: str) -> str:
    """The test server trusts local logins, so the password connects whatever it is."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> str:
    """What the user passes as --db: a path relative to the checkout, or a URL with a password."""
    if request.param == "sqlite":
        return ".ralph/ralph.db"
    return with_password(request.getfixturevalue("pg_url"))


@pytest.mark.parametrize("workers", [1, 2], ids=["checkout", "worktrees"])
def test_an_agent_reads_and_files_tasks_in_the_real_store_through_its_ralph_db(
    tmp_path: Path, db: str, workers: int
):
    repo = git_repo(tmp_path / "repo")
    out = tmp_path / "seen"
    out.mkdir()
    env = clean_env(tmp_path / "home", ZOO_OUT=str(out))
    (tmp_path / "home").mkdir()
    for task in ("A", "B"):
        added = ralph(repo, env, "--db", db, "add", f"Task {task}", "--id", task)
        assert added.returncode == 0, added.stderr
    cmd = shlex.join([sys.executable, str(AGENT)])
    run = ralph(repo, env, "--db", db, "run", "-w", str(workers), "--agent-cmd", cmd, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["done"] == 4  # A, B and the follow-up each filed

    store_url = db if "://" in db else str(repo / db)
    with open_store(store_url) as store:
        tasks = {t.id: t for t in store.list()}
    assert {t.status for t in tasks.values()} == {"done"}
    for task in ("A", "B"):
        seen = json.loads((out / f"{task}.json").read_text())
        # The follow-up went into the real store, linked to its source, and the agent's own
        # reads saw the real queue (its task among them).
        assert tasks[seen["follow_up"]].discovered_from == task
        assert {"A", "B", task, seen["follow_up"]} <= set(seen["listed"])
        if "://" in db:
            assert seen["db"] == db
        else:
            assert seen["db"] == str((repo / db).resolve())
        if workers > 1:
            assert Path(seen["cwd"]).resolve() != repo.resolve()  # it ran in a worktree
            assert not (Path(seen["cwd"]) / ".ralph" / "ralph.db").exists()
    assert task_commits(repo) == {t: 1 for t in tasks}
    assert subprocess.run(["git", "-C", str(repo), "fsck"], capture_output=True).returncode == 0
    # The password went to the agents' environment only.
    assert PASSWORD not in run.stdout + run.stderr
    for path in (repo / ".ralph").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
