"""The check before a launch: does this claim still let its holder work?

A host cut off from the database (or one that waited long on the network before launching)
may hold a claim that expired meanwhile and that another host has taken. Starting an agent on
it would run the task twice, so the worker asks just before each launch: one read, no lock,
so it never waits behind another session's row locks.
"""

from __future__ import annotations

from typing import Any

from ralph.models import Claim
from ralph.store.core import retried


class ClaimCheck:
    """Store mixin (SQLStore): `claim_lost`."""

    @retried
    def claim_lost(self, claim: Claim) -> str | None:
        """Why `claim` no longer lets its holder launch an agent, or None while it does (live,
        the same worker and fencing token, lease not run out by the store's clock)."""
        store: Any = self
        with store.transaction(write=False) as tx:
            row = tx.one("claim_get", id=claim.token)
            now = tx.now
        if row is None or row["task_id"] != claim.task_id:
            return f"the claim on {claim.task_id} (token {claim.token}) is gone"
        current = Claim.from_row(row)
        if current.state != "live":
            return f"the claim on {claim.task_id} (token {claim.token}) is {current.state}"
        if current.worker != claim.worker:
            return f"{claim.task_id} is claimed by {current.worker}, not {claim.worker}"
        if current.expires_at <= now:
            return f"the lease of {claim.worker} on {claim.task_id} ran out"
        return None
