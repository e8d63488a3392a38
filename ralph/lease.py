"""The lease renewer: keeps a claim alive while its agent works, and trips a kill switch if not.

It renews every lease/3 with the claim's fencing token. If the store refuses (the lease expired,
was released, or another worker holds the task), `on_lost` runs once: the loop kills the agent's
process group and commits nothing. A store that is briefly unreachable is retried until the lease
would have run out anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ralph.errors import LeaseLostError
from ralph.models import Claim
from ralph.store.base import SQLStore


class LeaseRenewer:
    """Renew `claim` in a background thread until `stop()`; use as a context manager."""

    def __init__(
        self,
        store: SQLStore,
        claim: Claim,
        on_lost: Callable[[str], None],
        interval: float | None = None,
    ):
        self.store = store
        self.claim = claim
        self.on_lost = on_lost
        self.interval = interval if interval is not None else max(0.05, claim.lease_seconds / 3)
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
        """Renew now, raising LeaseLostError if the claim is gone: the check before a commit."""
        if self.lost:
            raise LeaseLostError(self.lost)
        try:
            self.claim = self.store.renew(self.claim.task_id, self.claim.worker, self.claim.token)
        except LeaseLostError as exc:
            self._lose(exc.message)
            raise

    def _run(self) -> None:
        expires = self.claim.expires_at
        while not self._stop.wait(self.interval):
            try:
                self.claim = self.store.renew(
                    self.claim.task_id, self.claim.worker, self.claim.token
                )
                self.renewals += 1
                expires = self.claim.expires_at
            except LeaseLostError as exc:
                self._lose(exc.message)
                return
            except Exception as exc:  # store unreachable: keep trying while the lease lasts
                if time.time() >= expires:
                    self._lose(f"could not renew the lease before it expired: {exc}")
                    return

    def _lose(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
            self.on_lost(why)
