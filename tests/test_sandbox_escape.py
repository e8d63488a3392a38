"""The sandbox, proven from outside: `ralph run --sandbox` (real CLI, real bwrap, real git) with an
agent that tries to escape (tests/agents/escape_artist.py), then checks of the host.

Every try must fail where it matters: the output file the agent commits says what it saw, and
the host shows nothing changed (no file in $HOME, the target holds exactly ralph's commits,
config and hooks byte-identical, the store touched only by ralph, ralph alive, no key in any
output, no connection on the test's loopback listener, no process left behind).
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from chaos import check_history
from gitutil import git, init_repo
from pgserver import in_ci

from ralph.sandbox import bwrap
from ralph.store import open_store
from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-escape-test-1",
    "OPENAI_API_KEY": "sk-openai-escape-test-2",
    "SOME_SERVICE_API_KEY": "some-service-escape-test-3",
    "GITHUB_TOKEN": "ghp_escape_test_4",
}
# Must fail inside the sandbox in every mode (the rest may "work" inside it: the host decides).
MUST_BLOCK = (
    "read ~/.ssh/id_ed25519",
    "update the store",
    "kill -9 ralph",
    "print every API key",
    "connect to the host's loopback port",
    "plant a symlink as result.json",
)

_exe, _why = bwrap.probe()
pytestmark = pytest.mark.skipif(
    _why is not None and not in_ci(), reason=f"the sandbox cannot run here: {_why}"
)


@dataclass
class World:
    root: Path
    home: Path
    db: str  # the store: a SQLite file in .ralph/, or a PostgreSQL URL
    env: dict[str, str]
    key: str
    listener: socket.socket
    canary: subprocess.Popen[bytes]
    sleep_arg: str
    config: bytes
    hooks: dict[str, bytes]

    def ralph(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_ralph(*args, cwd=self.root, env=self.env, timeout=300)


@pytest.fixture(params=["sqlite", "postgres"])
def world(tmp_path: Path, request: pytest.FixtureRequest):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = f"FAKE-PRIVATE-KEY-{uuid.uuid4().hex}"
    (home / ".ssh" / "id_ed25519").write_text(key + "\n")
    root = init_repo(tmp_path / "repo", {"README.md": "# project\n"})
    (root / "NOTES.md").write_text("a second commit, so HEAD~1 exists\n")
    git(root, "add", "NOTES.md")
    git(root, "commit", "-q", "-m", "second")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(900)"])
    sleep_arg = f"1000.{uuid.uuid4().int % 10**6}"
    host_file = tmp_path / "host-file.txt"
    host_file.write_text("the host's own file\n")
    sqlite = request.param == "sqlite"
    db = str(root / ".ralph" / "ralph.db") if sqlite else request.getfixturevalue("pg_url")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
    env.update(SECRETS)
    if not sqlite:
        env["RALPH_DB"] = db
    env.update(
        HOME=str(home),
        ESCAPE_REPO=str(root),
        ESCAPE_TARGET="main",
        ESCAPE_DB=db,  # the artist knows where the store is
        ESCAPE_RALPH_PID=str(canary.pid),
        ESCAPE_PORT=str(listener.getsockname()[1]),
        ESCAPE_SLEEP=sleep_arg,
        ESCAPE_HOST_FILE=str(host_file),
    )
    hooks = {p.name: p.read_bytes() for p in sorted((root / ".git" / "hooks").iterdir())}
    w = World(
        root, home, db, env, key, listener, canary, sleep_arg,
        (root / ".git" / "config").read_bytes(), hooks,
    )  # fmt: skip
    try:
        yield w
    finally:
        canary.kill()
        canary.wait()
        listener.close()


def run_escapes(w: World, escapes: int, *flags: str) -> list[str]:
    tasks = []
    for n in range(escapes):
        tasks.append(f"esc{n + 1}")
        assert w.ralph("add", f"escape attempt {n + 1}", "--id", tasks[-1]).returncode == 0
    after = [arg for t in tasks for arg in ("--blocked-by", t)]  # the run goes on after them
    normal = w.ralph("add", "a normal task", "--id", "plain", *after)
    assert normal.returncode == 0, normal.stderr
    base = git(w.root, "rev-parse", "main")
    cmd = shlex.join([sys.executable, str(AGENTS / "escape_artist.py")])
    result = w.ralph("run", "--agent-cmd", cmd, "--sandbox", "--json", *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["done"] == escapes + 1, summary
    sqlite_db = None if "://" in w.db else Path(w.db)  # PRAGMA integrity_check on SQLite
    check_history(w.root, [*tasks, "plain"], sqlite_db, since=base)
    return tasks


def check_host(w: World, tasks: list[str], in_checkout: bool) -> None:
    root = w.root
    for task in tasks:
        said = git(root, "show", f"main:out/{task}.txt").splitlines()
        assert said[0] == f"{task} was here"
        tries = {line.split(": ")[1]: line for line in said[1:]}
        assert len(tries) == 16, said
        assert not [line for line in said if line.startswith("ESCAPED")], said
        for name in MUST_BLOCK:
            assert tries[name].startswith("blocked: "), tries[name]
        assert tries["setsid sleep"] == "done-inside: setsid sleep"  # it did start one
        if not in_checkout:  # the real repository is read-only: not even a view to write to
            for name in (
                "update-ref the target in the real repository",
                "edit the real .git/config",
            ):
                assert tries[name].startswith("blocked: "), tries[name]
    assert not (w.home / "pwned").exists()
    assert (root.parent / "host-file.txt").read_text() == "the host's own file\n"
    assert not (root / "progress.md").is_symlink()
    assert "the host's own file" not in git(root, "show", "main:progress.md")
    assert (w.root / ".git" / "config").read_bytes() == w.config
    hooks = {p.name: p.read_bytes() for p in sorted((root / ".git" / "hooks").iterdir())}
    assert hooks == w.hooks
    refs = git(root, "for-each-ref", "--format=%(refname)").splitlines()
    assert [r for r in refs if not r.startswith(("refs/ralph/tasks/", "refs/ralph/attempts/"))] == [
        "refs/heads/main"
    ], refs
    assert w.canary.poll() is None, "the process the agent was told to kill is dead"
    w.listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        w.listener.accept()  # a connection that came and went would still be queued here
    leftovers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if w.sleep_arg.encode() in argv:
                leftovers.append(entry.name)
    assert leftovers == []
    secrets = [*SECRETS.values(), w.key]
    files = [*(root / ".ralph" / "runs").rglob("*"), *(root / "out").iterdir()]
    for path in [*files, root / "progress.md"]:  # RALPH_NOTES goes to the progress log
        if path.is_file() and not path.is_symlink():  # a link the agent left reads the host
            text = path.read_bytes()
            assert not [s for s in secrets if s.encode() in text], path
    store = open_store(w.db)
    try:
        done = collections.Counter(e.task_id for e in store.events(kind="done"))
        statuses = {t.id: t.status for t in store.list()}
    finally:
        store.close()
    assert dict(done) == {t: 1 for t in [*tasks, "plain"]}  # each ended once, by ralph
    assert statuses == {t: "done" for t in [*tasks, "plain"]}


def test_escape_artist_in_the_checkout_is_contained_and_its_work_lands(world: World):
    tasks = run_escapes(world, 1)
    check_host(world, tasks, in_checkout=True)


def test_escape_artists_with_two_workers_are_contained_and_the_next_task_runs(world: World):
    tasks = run_escapes(world, 2, "--workers", "2")
    check_host(world, tasks, in_checkout=False)
