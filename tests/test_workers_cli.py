"""`ralph worker start/list`: persistent workers, crashes (SIGKILL) and zombies (SIGSTOP)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gitutil import git, init_repo

from ralph.store import open_store

AGENT = Path(__file__).parent / "scripts" / "parallel_agent.py"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "repo", {"README.md": "start\n"})
    (tmp_path / "ralph.toml").write_text('backoff = "0.1s"\npoll = "0.1s"\n')
    with open_store(root / ".ralph" / "ralph.db") as store:
        store.add("the task", id="t1")
    return root


@pytest.fixture
def spawn(repo: Path, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `ralph <args>` with the scripted agent; every process (and agent) is killed after."""
    procs: list[subprocess.Popen] = []
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PA_STARTED": str(tmp_path / "started")}
    env.pop("RALPH_DB", None)

    def start(*args: str, **extra: str) -> subprocess.Popen:
        argv = [
            sys.executable,
            "-m",
            "ralph",
            *args,
            "--agent-cmd",
            f"{sys.executable} {AGENT}",
            "--config",
            str(tmp_path / "ralph.toml"),
        ]
        proc = subprocess.Popen(
            argv,
            cwd=repo,
            env={**env, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
    for pid in agent_pids(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def agent_pids(tmp_path: Path) -> list[int]:
    started = tmp_path / "started"
    return [int(p.suffix[1:]) for p in started.iterdir()] if started.exists() else []


def wait_for(
    check: Callable[[], object], what: str, *running: subprocess.Popen, timeout: float = 60
) -> object:
    """Poll `check` until it is true; fail at once if one of `running` exits meanwhile."""
    deadline = time.time() + timeout
    while not (found := check()):
        for proc in running:
            assert proc.poll() is None, f"exited {proc.returncode}: {proc.stderr.read()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def task_commits(repo: Path) -> list[str]:
    """The `Worker:` trailer of every commit on main after the first."""
    shas = git(repo, "rev-list", "main").split()[:-1]
    return [git(repo, "show", "-s", "--format=%(trailers:key=Worker,valueonly)", s) for s in shas]


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=60)


def test_sigkilled_worker_task_is_finished_by_another_after_its_lease_and_worktree_repaired(
    repo: Path, tmp_path: Path, spawn
) -> None:
    crashed = spawn("worker", "start", "--name", "w1", "--lease", "2s", PA_SLEEP="120")
    wait_for(lambda: agent_pids(tmp_path), "the first agent to start", crashed)
    worktree = repo / ".ralph" / "worktrees" / "w1"
    assert git(worktree, "status", "--porcelain")  # the agent's half-done work
    crashed.send_signal(signal.SIGKILL)
    crashed.wait(timeout=30)
    for pid in agent_pids(tmp_path):  # the orphaned agent would write on: end it too
        os.killpg(pid, signal.SIGKILL)

    other = spawn("worker", "start", "--name", "w2", "--lease", "2s")
    with open_store(repo / ".ralph" / "ralph.db") as store:
        wait_for(lambda: store.get("t1").status == "done", "w2 to finish t1", other)
        events = [(e.kind, e.worker) for e in store.events(task_id="t1")]
    stop(other)

    assert ("expired", "w1") in events and ("done", None) in events
    assert task_commits(repo) == ["w2"]
    assert subprocess.run(["git", "fsck", "--no-progress"], cwd=repo).returncode == 0
    # w2 took the branch over, so w1's worktree no longer holds it; a git killed mid-command
    # there would also leave an index.lock and stray files, which the next start clears.
    assert git(worktree, "branch", "--show-current") == ""
    (worktree / "stray.txt").write_text("half written")
    lock = Path(git(worktree, "rev-parse", "--absolute-git-dir"), "index.lock")
    lock.write_text("")
    again = spawn("worker", "start", "--name", "w1")  # its pid is gone: the name is free
    # Watched through the files, not with git: a `git status` of the test's own, taking the
    # index lock while the worker repairs, would make the repair's git fail.
    wait_for(lambda: not lock.exists() and not (worktree / "stray.txt").exists(),
             "w1's worktree to be repaired", again)  # fmt: skip
    stop(again)
    assert git(worktree, "status", "--porcelain") == ""
    assert git(worktree, "branch", "--show-current") == ""


def test_sigstopped_zombie_never_gets_its_commit_onto_the_target(
    repo: Path, tmp_path: Path, spawn
) -> None:
    zombie = spawn(
        "worker", "start", "--name", "zombie", "--lease", "2s", PA_SLEEP="3", PA_SLOW_ONCE="1"
    )
    agent = wait_for(lambda: agent_pids(tmp_path), "the zombie's agent", zombie)[0]
    zombie.send_signal(signal.SIGSTOP)
    os.killpg(agent, signal.SIGSTOP)
    try:
        other = spawn("run", "--names", "fresh", "--lease", "2s", "--no-live")
        assert other.wait(timeout=120) == 0, other.stderr.read()
    finally:
        os.killpg(agent, signal.SIGCONT)
        zombie.send_signal(signal.SIGCONT)
    with open_store(repo / ".ralph" / "ralph.db") as store:
        # The zombie wakes, its renewal is refused, its agent is killed; nothing of it lands.
        wait_for(
            lambda: any(a.worker == "zombie" and a.outcome for a in store.attempts("t1")),
            "the zombie to give up its attempt",
        )
        assert store.get("t1").status == "done"
    stop(zombie)
    assert task_commits(repo) == ["fresh"]
    assert git(repo, "show", "main:work/t1.txt") == "t1 by fresh"


def test_worker_list_shows_the_busy_worker_with_its_task_and_the_idle_one(
    repo: Path, tmp_path: Path, spawn
) -> None:
    busy = spawn("worker", "start", "--name", "implementer-1", "--grace", "1s", PA_SLEEP="120")
    wait_for(lambda: agent_pids(tmp_path), "implementer-1's agent", busy)
    idle = spawn("worker", "start", "--name", "implementer-2", "--capabilities", "python")
    env = {**os.environ, "RALPH_DB": str(repo / ".ralph" / "ralph.db")}

    def listing() -> str | None:
        out = subprocess.run(
            [sys.executable, "-m", "ralph", "worker", "list"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out if "implementer-2" in out else None

    lines = wait_for(listing, "both workers to be listed", busy, idle).splitlines()
    with open_store(repo / ".ralph" / "ralph.db") as store:
        ids = {w.name: w.id for w in store.workers()}
    assert lines[0] == "Workers:"
    assert f"  {ids['implementer-1']} [busy] implementer-1 → t1" in lines
    assert f"  {ids['implementer-2']} [idle] implementer-2" in lines
    stop(idle)
    stop(busy)
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.claims() == []
        assert {w.state() for w in store.workers()} == {"stopped"}
