"""Crash harness: real `ralph` processes draining a queue while being SIGKILLed, and the checks
of the whole history afterwards (every task done once, one commit per task on the target, no
foreign files, git fsck and PRAGMA integrity_check clean, agent launches counted).

Used by tests/test_exactly_once.py and bench/bench_chaos.py.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

AGENTS = Path(__file__).parent / "agents"
# Kills fail attempts and lose leases far more often than real life: room for both, and a short
# backoff so a much-killed task is not left waiting past the run's deadline.
CONFIG = "max_expiries = 50\nmax_attempts = 10\nbackoff = 0.2\nbackoff_max = 1\n"
RALPH = [sys.executable, "-m", "ralph"]

# Installed as the repository's own reference-transaction hook: right after the target ref
# moved, with probability CHAOS_HOOK_P, SIGKILL the ralph process that moved it (the hook's
# nearest `python -m ralph` ancestor) while it holds the merge lock, before `done`.
KILL_AFTER_LANDING_HOOK = r"""#!/bin/sh
[ "$1" = committed ] || exit 0
moved=no
while read -r old new ref; do
    [ "$ref" = refs/heads/main ] && [ "$old" != "$new" ] && moved=yes
done
[ "$moved" = yes ] || exit 0
[ -n "$CHAOS_HOOK_P" ] || exit 0
if python3 -c "import random,sys; sys.exit(0 if random.random() < $CHAOS_HOOK_P else 1)"; then
    ralph=$PPID  # walk up to the ralph process (through git push / receive-pack)
    while [ "$ralph" -gt 1 ] && ! ps -o args= -p "$ralph" | grep -qE -- "-m ralph (run|worker)"; do
        ralph=$(ps -o ppid= -p "$ralph" | tr -d ' ')
    done
    echo "$ralph" >> "$CHAOS_HOOK_LOG"
    [ "$ralph" -gt 1 ] && kill -9 "$ralph"
fi
exit 0
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    (root / "README.md").write_text("chaos\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "start")
    return root


def install_kill_hook(git_dir: Path) -> None:
    hook = git_dir / "hooks" / "reference-transaction"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(KILL_AFTER_LANDING_HOOK)
    hook.chmod(0o755)


def chaos_env(base: Path, db: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RALPH_", "CHAOS_"))}
    env.update(
        HOME=str(base / "home"),
        RALPH_DB=db,
        # The chaos agent logs its launches to CHAOS_LAUNCHES outside the workspace, which the
        # sandbox hides: these runs measure crashes, not confinement.
        RALPH_SANDBOX="off",
        CHAOS_LAUNCHES=str(base / "launches.txt"),
        CHAOS_HOOK_LOG=str(base / "hook-kills.txt"),
        **extra,
    )
    return env


def agent_cmd() -> str:
    import shlex

    return shlex.join([sys.executable, str(AGENTS / "chaos_agent.py")])


@dataclass
class Chaos:
    """What a chaos run did."""

    kills: int = 0
    hook_kills: int = 0
    starts: int = 0
    launches: collections.Counter[str] = field(default_factory=collections.Counter)
    late: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def drain_under_fire(
    repo: Path,
    env: dict[str, str],
    *,
    commands: list[list[str]],
    tasks: int,
    kills: int,
    seed: int,
    deadline_s: float = 150.0,
    status: callable = None,  # type: ignore[valid-type]
) -> Chaos:
    """Run `commands` (each a ralph argv tail) as processes, SIGKILL random ones (`kills` times,
    of the worker, its process group, or one of its agents), restart them, until `status()`
    says every task is done; then stop them all."""
    rng = random.Random(seed)
    result = Chaos()
    started = time.monotonic()
    procs: list[subprocess.Popen | None] = [None] * len(commands)
    logs = repo.parent / "logs"
    logs.mkdir(exist_ok=True)

    def start(i: int) -> None:
        result.starts += 1
        out = open(logs / f"p{i}-{result.starts}.log", "w")  # noqa: SIM115
        procs[i] = subprocess.Popen(
            [*RALPH, *commands[i]],
            cwd=repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: a group kill must not reach pytest
        )

    for i in range(len(commands)):
        start(i)
    next_kill = time.monotonic() + rng.uniform(0.3, 1.0)
    try:
        while True:
            done = status()
            if done >= tasks:
                break
            assert time.monotonic() - started < deadline_s, (
                f"only {done}/{tasks} done after {deadline_s:.0f}s; logs in {logs}"
            )
            for i, proc in enumerate(procs):
                if proc is not None and proc.poll() is not None:
                    start(i)  # killed (by us or the hook) or exited: restart it
            if result.kills < kills and time.monotonic() >= next_kill:
                victim = rng.randrange(len(procs))
                proc = procs[victim]
                if proc is not None and proc.poll() is None:
                    how = rng.choice(["worker", "group", "agent"])
                    _kill(proc.pid, how)
                    result.kills += 1
                next_kill = time.monotonic() + rng.uniform(0.3, 1.2)
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc is not None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        _kill_agents(env["CHAOS_LAUNCHES"])
    result.wall_s = time.monotonic() - started
    hook_log = Path(env["CHAOS_HOOK_LOG"])
    result.hook_kills = len(hook_log.read_text().split()) if hook_log.exists() else 0
    launches = Path(env["CHAOS_LAUNCHES"])
    for line in launches.read_text().splitlines() if launches.exists() else []:
        task, _pid, verdict = line.split()
        result.launches[task] += 1
        if verdict == "LATE":
            result.late.append(task)
    return result


def _kill(pid: int, how: str) -> None:
    """SIGKILL the ralph process, its whole process group, or one of its agents."""
    try:
        if how == "group":
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        elif how == "agent":
            children = _descendants(pid)
            os.kill(children[-1] if children else pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children = collections.defaultdict(list)
    for line in out.splitlines():
        p, pp = map(int, line.split())
        children[pp].append(p)
    found, todo = [], [pid]
    while todo:
        for child in children[todo.pop()]:
            found.append(child)
            todo.append(child)
    return found


def _kill_agents(launches: str) -> None:
    """Agents of killed workers live on in their own sessions: end them after the run."""
    if not Path(launches).exists():
        return
    for line in Path(launches).read_text().splitlines():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError, IndexError):
            os.killpg(int(line.split()[1]), signal.SIGKILL)


def check_history(
    repo: Path, tasks: list[str], sqlite_db: Path | None = None, since: str | None = None
) -> dict[str, int]:
    """Assert the invariants on the whole history after `since` (default: the root commit);
    returns commit counts per task."""
    since = since or git(repo, "rev-list", "--max-parents=0", "main")
    fmt = "--format=%H%x00%(trailers:key=Task,valueonly,separator=%x2c)"
    log = git(repo, "log", fmt, f"{since}..main")
    per_task: collections.Counter[str] = collections.Counter()
    for line in log.splitlines():
        sha, _, task = line.partition("\0")
        assert task, f"{sha} has no Task trailer"
        per_task[task] += 1
        files = git(repo, "show", "--name-only", "--format=", sha).splitlines()
        files = [f for f in files if f != "progress.md"]  # the RALPH memory rides along
        assert files == [f"out/{task}.txt"], f"commit {sha[:10]} of {task} touches {files}"
        assert git(repo, "rev-parse", f"refs/ralph/tasks/{task}") == sha
    assert dict(per_task) == {t: 1 for t in tasks}, per_task
    git(repo, "fsck", "--no-progress", "--strict")
    assert git(repo, "status", "--porcelain") == ""
    if sqlite_db is not None:
        conn = sqlite3.connect(sqlite_db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    return dict(per_task)
