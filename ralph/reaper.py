"""Find and end the processes an agent left behind, wherever they went.

An agent's own process group is easy to kill, but real agents start dev servers with `setsid`
(new session, new group) and a SIGKILLed worker leaves its agent running in the worktree. What
all of them keep is their environment: ralph puts `RALPH_ATTEMPT=<unique id>` (and
`RALPH_WORKSPACE=<path>`) in the agent's env and every descendant inherits it, so scanning
`/proc/*/environ` finds them. Linux only; elsewhere the scans find nothing.

psutil reads the process table (environments, parents, start times, states); sessions and
groups come from getsid/getpgid. A process is known by its pid AND its start time, so a pid
reused by another program is never mistaken for it, and it is signalled through a pidfd where
the kernel has them, so a pid that is reused while we wait is never hit. Our own process and
its ancestors are never signalled. psutil costs ~10 ms to import: only `ralph run` loads this
module, never the hot commands (`ready`, `claim`, `done`, `add`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

import psutil

PROC = "/proc"
MARKER = "RALPH_ATTEMPT"
WORKSPACE = "RALPH_WORKSPACE"
_POLL = 0.02  # how often a platform without pidfds re-checks whether a process is gone


def available() -> bool:
    """True where processes can be found by their environment (Linux with /proc)."""
    return sys.platform.startswith("linux") and os.path.isdir(PROC)


def find(marker_key: str, value: str) -> list[int]:
    """Pids whose environment holds `marker_key=value` (never ours or an ancestor's)."""
    return find_by_env({marker_key: value})


def find_env(**pairs: str) -> list[int]:
    """Pids whose environment holds every `KEY=value` given, e.g. `RALPH_WORKSPACE=str(path)`."""
    return find_by_env(pairs)


def find_by_env(pairs: Mapping[str, str]) -> list[int]:
    """Pids whose environment holds every pair; processes we cannot read are skipped."""
    if not pairs or not available():
        return []
    protected = protected_pids()
    found = []
    for proc in psutil.process_iter():
        if proc.pid in protected:
            continue
        try:
            env = proc.environ()
        except psutil.Error:  # gone, another user's, or a kernel thread
            continue
        if all(env.get(key) == value for key, value in pairs.items()):
            found.append(proc.pid)
    return found


def in_session(sid: int) -> list[int]:
    """Live pids (zombies left out) whose session id is `sid`, whatever their process group."""
    return [pid for pid in _live() if _ids(pid, os.getsid) == sid]


def in_group(pgid: int) -> list[int]:
    """Live pids (zombies left out) in process group `pgid`."""
    return [pid for pid in _live() if _ids(pid, os.getpgid) == pgid]


def descendants(root: int) -> dict[int, float]:
    """Every live descendant of `root`, as pid -> start time (to tell a reused pid apart).
    psutil follows parent pids and drops a child started before its parent (a reused pid)."""
    if not available():
        return {}
    try:
        children = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return {}
    found: dict[int, float] = {}
    for child in children:
        started = _start(child)
        if started is not None:
            found[child.pid] = started
    return found


def alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists (a crashed worker's row, or a
    marker, looks live a while after it died); another user's process counts."""
    return psutil.pid_exists(pid)


def start_time(pid: int) -> float | None:
    """The process's start time, as psutil reads it; None when it is gone or a zombie."""
    if not available():
        return None
    try:
        return _start(psutil.Process(pid))
    except psutil.Error:
        return None


def cmdline(pid: int) -> str:
    """The process's command line as one string (for log lines); '' when it is gone."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def protected_pids() -> set[int]:
    """Our pid and every ancestor's: a scan must never return them (nested ralph runs share
    markers with the agent that started them)."""
    pids = {0, 1, os.getpid()}
    try:
        pids.update(p.pid for p in psutil.Process().parents())
    except psutil.Error:  # an ancestor went away while we looked: fall back to our parent
        pids.add(os.getppid())
    return pids


def reap(pids: Iterable[int], grace: float, *, termed: Collection[int] = ()) -> list[int]:
    """SIGTERM each live process, wait up to `grace` seconds, SIGKILL what is left.

    Returns the pids that were still running and had to be ended, sorted. Pids in `termed`
    already had their SIGTERM (a second one makes some programs, ralph among them, quit at
    once). A stopped process also gets SIGCONT so it can act on the SIGTERM within the grace.
    """
    protected = protected_pids()
    targets = [_Target.open(pid) for pid in dict.fromkeys(pids) if pid not in protected]
    alive = [t for t in targets if t is not None and t.alive()]
    try:
        for t in alive:
            if t.pid not in termed:
                t.send(signal.SIGTERM)
            t.send(signal.SIGCONT)
        left = _wait(alive, grace)
        for t in left:
            t.send(signal.SIGKILL)
        _wait(left, 5.0)  # SIGKILL cannot be ignored; this only waits for the kernel to finish
    finally:
        for t in targets:
            if t is not None:
                t.close()
    return sorted(t.pid for t in alive)


def send(pids: Iterable[int], sig: signal.Signals) -> list[int]:
    """Send `sig` to each live process (never ours or an ancestor); returns the pids it reached."""
    protected = protected_pids()
    reached = []
    for pid in dict.fromkeys(pids):
        target = _Target.open(pid) if pid not in protected else None
        if target is None:
            continue
        try:
            if target.alive():
                target.send(sig)
                reached.append(pid)
        finally:
            target.close()
    return reached


class _Target:
    """One process to end: a pidfd where the kernel has them, else the bare pid."""

    def __init__(self, pid: int, fd: int | None, started: float | None):
        self.pid = pid
        self.fd = fd
        self.started = started

    @classmethod
    def open(cls, pid: int) -> _Target | None:
        started = start_time(pid) if available() else None
        fd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                return None
            except OSError:
                fd = None  # old kernel or not permitted: fall back to the pid
        if fd is not None and started is not None and start_time(pid) != started:
            os.close(fd)  # the pid was reused between the scan and the open
            return None
        return cls(pid, fd, started)

    def alive(self) -> bool:
        if self.fd is not None:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            return not poller.poll(0)  # a pidfd is readable once its process has exited
        if available():
            return self.started is not None and start_time(self.pid) == self.started
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def send(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            elif self.alive():
                os.kill(self.pid, sig)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _wait(targets: list[_Target], timeout: float) -> list[_Target]:
    """Wait until every target has exited or `timeout` passed; returns those still alive."""
    deadline = time.monotonic() + timeout
    left = [t for t in targets if t.alive()]
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        fds = [t.fd for t in left if t.fd is not None]
        if len(fds) == len(left):
            poller = select.poll()
            for fd in fds:
                poller.register(fd, select.POLLIN)
            poller.poll(remaining * 1000)
        else:
            time.sleep(min(_POLL, remaining))
        left = [t for t in left if t.alive()]
    return left


def _start(proc: psutil.Process) -> float | None:
    """A process's start time, None when it is a zombie or gone."""
    try:
        with proc.oneshot():
            return None if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except psutil.Error:
        return None


def _live() -> Iterator[int]:
    """The pids of every process that is not a zombie (none where scans are unavailable)."""
    if not available():
        return
    for proc in psutil.process_iter(["status"]):
        if proc.info["status"] not in (psutil.STATUS_ZOMBIE, None):
            yield proc.pid


def _ids(pid: int, get: Callable[[int], int]) -> int | None:
    """os.getsid / os.getpgid of `pid`, None when it is gone."""
    try:
        return get(pid)
    except OSError:
        return None


def end_orphans(workspace: str, grace: float) -> int:
    """End every process still marked with this workspace (`RALPH_WORKSPACE`): agents of a
    killed worker outlive it in their own sessions and write on into the workspace, so whatever
    runs there before the workspace is reused is an orphan. Returns how many were ended."""
    found = find_env(RALPH_WORKSPACE=workspace)
    return len(reap(found, grace)) if found else 0
