"""The merge lock: one landing at a time per repository, across the threads of a process
(threading.Lock) and the processes of a host (flock on `.ralph/merge.lock`).

A SIGKILLed holder releases the flock with its file descriptor; a SIGSTOPped one keeps it, and
the others give up after `timeout` with an error naming the holder.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from ralph import errors

LOCK_NAME = "merge.lock"

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


class MergeLock:
    """One lock per repository across threads (threading.Lock) and processes (flock)."""

    def __init__(self, path: Path, *, timeout: float = 900.0, holder: str = ""):
        self.path = path
        self.timeout = timeout
        self.holder = holder or f"pid {os.getpid()}"
        with _thread_locks_guard:
            self._thread_lock = _thread_locks.setdefault(str(path.resolve()), threading.Lock())
        self._fd: int | None = None

    def __enter__(self) -> MergeLock:
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise self._timeout_error()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                for attempt in Retrying(
                    stop=stop_after_delay(self.timeout),
                    wait=wait_exponential(multiplier=0.01, max=0.25),
                    retry=retry_if_exception_type(BlockingIOError),
                    reraise=True,
                ):
                    with attempt:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._timeout_error() from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {self.holder}\n".encode())
            self._fd = fd
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        finally:
            self._thread_lock.release()

    def _timeout_error(self) -> errors.MergeLockTimeoutError:
        try:
            who = self.path.read_text().strip() or "unknown"
        except OSError:
            who = "unknown"
        return errors.MergeLockTimeoutError(
            f"timed out after {self.timeout:.0f}s waiting for the merge lock {self.path} "
            f"(last holder: {who})",
            hint="a stopped (SIGSTOP) ralph process may hold it",
        )
