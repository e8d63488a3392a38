"""Crash recovery without a daemon: a thread inside every `run`/`worker start` process that expires
run-out leases and the claims of dead workers, so their tasks become ready again.

A worker is dead when its heartbeat is older than three intervals (or it is marked stopped while
still holding claims). Its claims are *expired*, not released, so each one counts toward the
store's poison-pill limit (`max_expiries`): a task that keeps crashing its workers ends `failed`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ralph.models import Claim
from ralph.store.base import SQLStore

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0


@dataclass
class Sweep:
    """What one pass did: claims whose lease ran out, and claims taken from dead workers."""

    expired: list[Claim] = field(default_factory=list)
    dead: dict[str, list[Claim]] = field(default_factory=dict)

    @property
    def claims(self) -> list[Claim]:
        return [*self.expired, *(c for held in self.dead.values() for c in held)]

    def __bool__(self) -> bool:
        return bool(self.expired or self.dead)


def sweep(store: SQLStore) -> Sweep:
    """One pass: expire stale leases, then the live claims of every holder that is dead.

    Deadness is judged inside the store's transaction by the database clock, so a worker that
    heartbeats between our read and the expiry keeps its claims.
    """
    result = Sweep(expired=store.expire_stale())
    for worker in sorted({c.worker for c in store.claims()}):
        taken = store.expire_worker(worker)
        if taken:
            result.dead[worker] = taken
    return result


class Sweeper:
    """Runs `sweep` every `interval` seconds on a daemon thread until `stop()`."""

    def __init__(
        self,
        store: SQLStore,
        *,
        interval: float = DEFAULT_INTERVAL,
        on_sweep: Callable[[Sweep], None] | None = None,
    ):
        if interval <= 0:
            raise ValueError("the sweep interval must be positive")
        self.store = store
        self.interval = interval
        self.on_sweep = on_sweep
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sweeper:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ralph-sweeper", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Ask the thread to stop and wait for a pass in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Sweeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        # First pass at once: a run that starts after a crash recovers its tasks immediately.
        while not self._stop.is_set():
            try:
                found = sweep(self.store)
            except Exception as exc:  # a busy or unreachable store must not end recovery
                log.warning("sweeper: %s", exc)
            else:
                self.passes += 1
                if found:
                    for worker, held in found.dead.items():
                        log.info(
                            "sweeper: %s is dead; expired %s",
                            worker,
                            ", ".join(c.task_id for c in held),
                        )
                    if self.on_sweep is not None:
                        self.on_sweep(found)
            self._stop.wait(self.interval)
