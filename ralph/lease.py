"""The lease renewer: keeps a claim alive while its agent works, and trips a kill switch if not.

It renews every lease/3 with the claim's fencing token. If the store refuses (the lease expired,
was released, or another worker holds the task), `on_lost` runs once: the loop kills the agent's
process group and commits nothing.

A lease counts as held only while a renewal proves it: each one that succeeds moves the
deadline to (when it was sent + the lease - a margin), measured on this host's clock alone, so
no clock skew with the database matters. A renewal runs in a thread of its own and is waited
for only until that deadline: a socket blocked by a silent network partition cannot hold the
renewer past it. When the deadline passes unproven, the lease is treated as lost, so the
agent is stopped (its work kept as a patch) before the lease ends and another host takes the
task, partition or not. A store that fails quickly is retried until then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ralph.errors import LeaseLostError
from ralph.models import Claim
from ralph.store.base import SQLStore


def margin_for(lease: float) -> float:
    """How long before the lease's end its holder gives up: a fifth of the lease, at most
    30 s, enough for the agent's process group to be stopped before another host may start."""
    return min(30.0, lease / 5)


class LeaseRenewer:
    """Renew `claim` in a background thread until `stop()`; use as a context manager."""

    def __init__(
        self,
        store: SQLStore,
        claim: Claim,
        on_lost: Callable[[str], None],
        interval: float | None = None,
        margin: float | None = None,
    ):
        self.store = store
        self.claim = claim
        self.on_lost = on_lost
        self.interval = interval if interval is not None else max(0.05, claim.lease_seconds / 3)
        self.margin = margin if margin is not None else margin_for(claim.lease_seconds)
        # Until the first renewal: the claim's own expiry (the clocks of a fresh claim agree
        # closely enough), never later than a whole lease from now.
        self.deadline = min(claim.expires_at, time.time() + claim.lease_seconds) - self.margin
        self.lost: str | None = None
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"lease-{claim.task_id}", daemon=True
        )

    def __enter__(self) -> LeaseRenewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def check(self) -> None:
        """Renew now, raising LeaseLostError if the claim is gone or cannot be proven before
        the deadline: the check before a commit."""
        if self.lost:
            raise LeaseLostError(self.lost)
        try:
            self._renew_once()
        except LeaseLostError as exc:
            self._lose(exc.message)
            raise

    def _renew_once(self) -> None:
        """One renewal, waited for until the deadline; LeaseLostError when it is refused or
        does not answer in time, any other error when the store failed before then."""
        sent = time.time()
        box: dict[str, Any] = {}

        def renew() -> None:
            try:
                box["claim"] = self.store.renew(
                    self.claim.task_id, self.claim.worker, self.claim.token
                )
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc

        thread = threading.Thread(target=renew, name=f"renew-{self.claim.task_id}", daemon=True)
        thread.start()
        thread.join(max(0.0, self.deadline - time.time()))
        if thread.is_alive():  # blocked (a silent partition): left behind, its answer unused
            raise LeaseLostError(self._unproven("the store did not answer"))
        if "error" in box:
            raise box["error"]
        self.claim = box["claim"]
        self.renewals += 1
        self.deadline = sent + self.claim.lease_seconds - self.margin

    def _unproven(self, why: str) -> str:
        return (
            f"could not renew the lease of {self.claim.task_id} in time ({why}); "
            f"stopping {self.margin:.1f} s before it may expire"
        )

    def _run(self) -> None:
        wait = self.interval
        while not self._stop.wait(max(0.0, min(wait, self.deadline - time.time()))):
            if time.time() >= self.deadline:
                self._lose(self._unproven("no renewal succeeded"))
                return
            try:
                self._renew_once()
                wait = self.interval
            except LeaseLostError as exc:
                self._lose(exc.message)
                return
            except Exception as exc:  # store unreachable: keep trying while the lease lasts
                if time.time() >= self.deadline:
                    self._lose(self._unproven(str(exc)))
                    return
                wait = min(self.interval, 1.0)

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
            self.on_lost(why)
