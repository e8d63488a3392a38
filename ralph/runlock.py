"""Which runs may share one repository, enforced with flock(2) on files under `.ralph/locks/`.

A run in the checkout (one worker working in the user's own tree, on the target branch) must be
alone: another run's landings would move the branch under its agent, and its agent's files would
be swept into the other's commits. So it takes `run.lock` exclusively, and every worktree run
(`ralph run -w N`, `ralph worker start`) takes it shared: any number of worktree runs work side by
side (the seed's "several worker processes, one store" pattern), each landing under the merge
lock. Each worker name also takes `worker-<name>.lock` exclusively, so two processes never share
one worktree. The kernel drops the locks when a process dies, however it dies; the pid files
beside them only name the holder in the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
from pathlib import Path
from typing import IO

from ralph import reaper
from ralph.errors import WorkspaceError
from ralph.store import ensure_ralph_dir

LOCKS_DIR = "locks"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class RunLock:
    """Held for a whole run: `run.lock` (exclusive in the checkout, shared with worktrees) and
    one lock per worker name."""

    def __init__(self, ralph_dir: Path, *, checkout: bool, names: list[str]):
        self.dir = ralph_dir / LOCKS_DIR
        self.checkout, self.names = checkout, names
        self.held: list[IO[bytes]] = []
        self.pid_file = self.dir / "run.pids" / str(os.getpid())

    def __enter__(self) -> RunLock:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "run.pids").mkdir(exist_ok=True)
        try:
            self._take(self.dir / "run.lock", exclusive=self.checkout, worker=None)
            _forget_dead(self.dir)
            self.pid_file.write_text("checkout\n" if self.checkout else "worktrees\n")
            for name in self.names:
                self._take(self._worker_lock(name), exclusive=True, worker=name)
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        for fh in reversed(self.held):
            fh.close()  # closing the last descriptor drops the flock
        self.held = []

    def _worker_lock(self, name: str) -> Path:
        return self.dir / f"worker-{_SAFE.sub('-', name).strip('.-') or 'worker'}.lock"

    def _take(self, path: Path, *, exclusive: bool, worker: str | None) -> None:
        fh = open(path, "a+b")  # noqa: SIM115 -- held open for the whole run
        try:
            fcntl.flock(fh, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise self._refusal(path, worker) from None
        self.held.append(fh)
        if worker is not None:
            fh.truncate(0)
            fh.write(f"{os.getpid()}\n".encode())
            fh.flush()

    def _refusal(self, path: Path, worker: str | None) -> WorkspaceError:
        root = self.dir.parent.parent
        if worker is not None:
            pid = _read_pid(path)
            return WorkspaceError(
                f"worker {worker} is already running in {root} (pid {pid or '?'})",
                hint="pick other names with --names or --name, or stop that run first",
            )
        others = [p for p in _holders(self.dir) if p != os.getpid()]
        shown = ", ".join(str(p) for p in others) or "?"
        if self.checkout:
            return WorkspaceError(
                f"another ralph run (pid {shown}) is using {root}",
                hint="one run at a time works in the checkout: wait for it or stop it",
            )
        return WorkspaceError(
            f"a ralph run in the checkout (pid {shown}) is using {root}",
            hint="wait for it or stop it; worktree runs can then share the repository",
        )


def _read_pid(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().split()[0])
    return None


def _forget_dead(locks: Path) -> None:
    """Drop the pid files of runs that died without removing theirs (SIGKILL)."""
    for entry in (locks / "run.pids").glob("*"):
        if not entry.name.isdigit() or not reaper.alive(int(entry.name)):
            entry.unlink(missing_ok=True)


def _holders(locks: Path) -> list[int]:
    """Pids of the runs that say they hold `run.lock` and are alive."""
    found = []
    for entry in sorted((locks / "run.pids").glob("*")):
        if entry.name.isdigit() and reaper.alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def hold(
    repo: Path, *, checkout: bool, names: list[str]
) -> contextlib.AbstractContextManager[object]:
    """The run's locks for the repository holding `repo` (nothing to lock outside one: the
    workspace then says what is wrong)."""

    args = ["--show-toplevel"] if checkout else ["--git-common-dir"]
    found = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", *args],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if found.returncode != 0 or not found.stdout.strip():
        return contextlib.nullcontext()
    path = Path(found.stdout.strip())
    root = path if checkout else path.parent
    if not checkout and path.name != ".git":
        return contextlib.nullcontext()  # a bare repository: Worktrees refuses it

    return RunLock(ensure_ralph_dir(root), checkout=checkout, names=names)
