"""Leased, fenced claims: claim, renew, release, finish, reconcile, expire."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ralph import errors
from ralph.models import AttemptEnd, Claim, Task
from ralph.store.core import DEAD_AFTER_BEATS, StoreCore, Tx, _dump, retried


class ClaimStore(StoreCore):
    """Leased, fenced claims."""

    @retried
    def claim(self, task_id: str, worker: str, lease: float = 1800.0) -> Claim:
        """Claim one task for `worker` for `lease` seconds; refuses if anyone holds it."""
        lease = self._check_lease(lease)
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            if task.status != "open":
                raise errors.InvalidTransitionError(f"cannot claim {task_id}: it is {task.status}")
            if task.open_blockers:
                raise errors.BlockedError(
                    f"cannot claim {task_id}: blocked by {', '.join(task.blocked_by)}"
                )
            if task.open_children:
                raise errors.BlockedError(f"cannot claim {task_id}: it has open children")
            claim = self._claim(tx, task_id, worker, lease)
        if claim is None:  # raised after commit, so the expiry that failed the task is kept
            raise errors.InvalidTransitionError(
                f"cannot claim {task_id}: it failed, its claim was lost {self.max_expiries} times"
            )
        return claim

    @retried
    def claim_next(
        self, worker: str, capabilities: Iterable[str] | None = None, lease: float = 1800.0
    ) -> Claim | None:
        """Pick the best ready task and claim it, in one transaction; None when nothing is ready."""
        lease = self._check_lease(lease)
        caps = None if capabilities is None else _dump(sorted(set(capabilities)))
        with self.transaction() as tx:
            while True:  # each pass that finds no claim failed a poisoned task: it ends
                row = tx.one("task_ready_for_claim", now=tx.now, caps=caps)
                if row is None:
                    return None
                # A task row's lease_expires is 0 exactly when it has no live claim (every path
                # that ends a claim zeroes it), so most picks skip looking for a lapsed one; the
                # one-live-claim index would refuse a second claim if that ever went wrong.
                claim = self._claim(tx, row["id"], worker, lease, row["lease_expires"] != 0)
                if claim is not None:
                    return claim

    def _claim(
        self, tx: Tx, task_id: str, worker: str, lease: float, may_be_held: bool = True
    ) -> Claim | None:
        """Claim, expiring a lapsed claim first; None when that expiry failed the task."""
        live = tx.one("claim_live_for_task", task_id=task_id) if may_be_held else None
        if live is not None:
            if live["expires_at"] > tx.now:
                raise errors.AlreadyClaimedError(task_id, live["worker"], live["expires_at"])
            if self._expire(tx, Claim.from_row(live)):
                return None
        claim = Claim.from_row(
            tx.one("claim_insert", task_id=task_id, worker=worker, lease=lease, now=tx.now)
        )
        tx.run("task_set_lease", id=task_id, lease_expires=claim.expires_at)
        self._event(tx, "claimed", task_id, worker, claim.token, lease_seconds=lease)
        return claim

    @staticmethod
    def _check_lease(lease: float) -> float:
        if isinstance(lease, bool) or not isinstance(lease, int | float) or lease <= 0:
            raise errors.UsageError(f"invalid lease {lease!r}: it must be greater than zero")
        return float(lease)

    @retried
    def renew(self, task_id: str, worker: str, token: int | None = None) -> Claim:
        """Extend the holder's live claim to now + its own lease length."""
        with self.transaction() as tx:
            claim = self._live_claim(tx, task_id, worker, token, "renew")
            if self.max_renewals is not None and claim.renewals >= self.max_renewals:
                raise errors.RenewalLimitError(
                    f"cannot renew {task_id}: renewed {claim.renewals} times already "
                    f"(limit {self.max_renewals})"
                )
            renewed = Claim.from_row(tx.one("claim_renew", id=claim.token, now=tx.now))
            tx.run("task_set_lease", id=task_id, lease_expires=renewed.expires_at)
            self._event(tx, "renewed", task_id, worker, claim.token, renewals=renewed.renewals)
            return renewed

    @retried
    def release(
        self,
        task_id: str,
        worker: str,
        token: int | None = None,
        *,
        retry_in: float = 0.0,
        count_attempt: bool = False,
        note: str | None = None,
    ) -> None:
        """Give the task back to the queue (holder only), optionally after a backoff delay."""
        with self.transaction() as tx:
            claim = self._live_claim(tx, task_id, worker, token, "release")
            tx.run("claim_end", id=claim.token, state="released", now=tx.now)
            tx.run(
                "task_requeue",
                id=task_id,
                count=int(count_attempt),
                retry_in=retry_in,
                note=note,
                now=tx.now,
            )
            self._event(
                tx,
                "released",
                task_id,
                worker,
                claim.token,
                retry_in=retry_in,
                counted=count_attempt,
                note=note,
            )

    @retried
    def fail(
        self,
        task_id: str,
        worker: str,
        token: int | None = None,
        *,
        reason: str,
        count_attempt: bool = True,
    ) -> Task:
        """Mark the task failed for good (max attempts reached) and release its claim."""
        with self.transaction() as tx:
            claim = self._live_claim(tx, task_id, worker, token, "fail")
            tx.run("claim_end", id=claim.token, state="released", now=tx.now)
            tx.run("task_fail", id=task_id, count=int(count_attempt), note=reason, now=tx.now)
            self._event(tx, "failed", task_id, worker, claim.token, reason=reason)
            return self._task(tx, task_id)

    @retried
    def finish(
        self,
        task_id: str,
        *,
        worker: str,
        token: int,
        verdict: str,
        attempt_id: int | None = None,
        end: AttemptEnd | None = None,
        commit: str | None = None,
        retry_in: float = 0.0,
        note: str | None = None,
    ) -> tuple[Task, list[str]]:
        """End a claimed task in one transaction checked against the claim's token.

        verdict: "done" (with the commit that completed it, if any), "retry" (back to the
        queue after `retry_in` s, counting an attempt when `end.counted`), "release" (back at
        once, uncounted) or "failed". The attempt is finished in the same transaction. Raises
        LeaseLostError, changing nothing, when the claim is no longer this token's.
        Returns the task as it now is and, for "done", the ids it unblocked.
        """
        if verdict not in ("done", "retry", "release", "failed"):
            raise ValueError(f"unknown verdict {verdict!r}")
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            live = self._live_claim(tx, task_id, worker, token, "finish")
            counted = bool(end and end.counted) and verdict in ("retry", "failed")
            unblocked: list[str] = []
            if verdict == "done":
                if commit:
                    tx.run("task_set_commit", id=task_id, commit=commit)
                if end is not None and end.counted:  # `attempts`: every counted agent run
                    tx.run("task_count_attempt", id=task_id)
                unblocked = self._transition(tx, task, "done", live)
            elif verdict == "failed":
                tx.run("claim_end", id=live.token, state="released", now=tx.now)
                tx.run("task_fail", id=task_id, count=int(counted), note=note, now=tx.now)
                self._event(tx, "failed", task_id, worker, live.token, reason=note)
            else:
                tx.run("claim_end", id=live.token, state="released", now=tx.now)
                tx.run(
                    "task_requeue",
                    id=task_id,
                    count=int(counted),
                    retry_in=retry_in if verdict == "retry" else 0.0,
                    note=note,
                    now=tx.now,
                )
                self._event(
                    tx,
                    "released",
                    task_id,
                    worker,
                    live.token,
                    retry_in=retry_in,
                    counted=counted,
                    note=note,
                )
            if attempt_id is not None and end is not None:
                self._finish_attempt(tx, attempt_id, end)
            return self._task(tx, task_id), unblocked

    @retried
    def reconcile(self, task_id: str, commit: str, *, worker: str | None = None) -> bool:
        """Mark a task done because its commit is on the target branch (found there after a
        crash); ends whatever claim it has. False when it was already done."""
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            if task.status == "done":
                if not task.commit_sha:
                    tx.run("task_set_commit", id=task_id, commit=commit)
                return False
            if task.status != "open":  # failed or cancelled, yet its work landed
                tx.run("task_set_status", id=task_id, status="open", now=tx.now, done_at=None)
                task.status = "open"
            if task.open_blockers or task.open_children:
                return False  # cannot be done before its blockers; left for a human
            tx.run("task_set_commit", id=task_id, commit=commit)
            self._review_reconciled(tx, task_id, commit, worker or "reconcile")  # approved
            self._transition(tx, task, "done")
            self._event(tx, "reconciled", task_id, worker, commit=commit)
            return True

    @retried
    def active_claim(self, task_id: str) -> Claim | None:
        """The task's live claim, if its lease has not run out (tx: getActiveClaim)."""
        with self.transaction(write=False) as tx:
            self._task(tx, task_id)
            row = tx.one("claim_live_for_task", task_id=task_id)
            return Claim.from_row(row) if row and row["expires_at"] > tx.now else None

    @retried
    def get_claim(self, claim_id: int) -> Claim:
        with self.transaction(write=False) as tx:
            row = tx.one("claim_get", id=claim_id)
        if row is None:
            raise errors.ClaimNotFoundError(f"no claim with id {claim_id}")
        return Claim.from_row(row)

    @retried
    def claims(self) -> list[Claim]:
        """Claims not yet released or expired (some may be past their expiry, awaiting sweep)."""
        with self.transaction(write=False) as tx:
            return [Claim.from_row(r) for r in tx.all("claims_live")]

    @retried
    def expired(self) -> list[Claim]:
        """Live claims whose lease has run out (tx: getExpired)."""
        with self.transaction(write=False) as tx:
            return [Claim.from_row(r) for r in tx.all("claims_expired", now=tx.now)]

    @retried
    def expire(self, claim_id: int, *, force: bool = False) -> Claim:
        """Expire one claim whose lease ran out (or any live one with `force`)."""
        with self.transaction() as tx:
            row = tx.one("claim_get", id=claim_id)
            if row is None:
                raise errors.ClaimNotFoundError(f"no claim with id {claim_id}")
            claim = Claim.from_row(row)
            if claim.state != "live":
                raise errors.InvalidTransitionError(f"claim {claim_id} is already {claim.state}")
            if claim.expires_at > tx.now and not force:
                raise errors.InvalidTransitionError(
                    f"claim {claim_id} on {claim.task_id} is still live",
                    hint="wait for it to expire, or release it as its holder",
                )
            self._expire(tx, claim)
            return claim

    @retried
    def expire_stale(self) -> list[Claim]:
        """Expire every claim whose lease ran out; their tasks become ready again."""
        with self.transaction() as tx:
            stale = [Claim.from_row(r) for r in tx.all("claims_expired", now=tx.now)]
            for claim in stale:
                self._expire(tx, claim)
            return stale

    def _expire(self, tx: Tx, claim: Claim, **why: Any) -> bool:
        """Expire a claim; True when that was the task's last allowed expiry and it failed."""
        tx.run("claim_end", id=claim.token, state="expired", now=tx.now)
        self._close_crashed(tx, claim.task_id, claim.token)
        expiries = tx.one("task_count_expiry", id=claim.task_id)["expiries"]
        self._event(
            tx, "expired", claim.task_id, claim.worker, claim.token, expiries=expiries, **why
        )
        if self.max_expiries is not None and expiries >= self.max_expiries:
            reason = f"its claim was lost {expiries} times (worker crashes or hangs)"
            tx.run("task_fail", id=claim.task_id, count=0, note=reason, now=tx.now)
            self._event(tx, "failed", claim.task_id, claim.worker, claim.token, reason=reason)
            return True
        return False

    @retried
    def release_worker(self, worker: str) -> list[Claim]:
        """Release every live claim held by `worker` (tx: releaseByWorker)."""
        with self.transaction() as tx:
            held = [Claim.from_row(r) for r in tx.all("claims_live_by_worker", worker=worker)]
            for claim in held:
                tx.run("claim_end", id=claim.token, state="released", now=tx.now)
                tx.run("task_set_lease", id=claim.task_id, lease_expires=0)
                self._event(
                    tx, "released", claim.task_id, worker, claim.token, reason="release_worker"
                )
            return held

    @retried
    def expire_worker(self, worker: str, *, only_if_dead: bool = True) -> list[Claim]:
        """Expire every live claim of a dead worker (no heartbeat for three intervals, or
        stopped), judged by this transaction's clock; expiries count toward `max_expiries`."""
        with self.transaction() as tx:
            row = tx.one("worker_by_name", name=worker)
            if only_if_dead and (
                row is None
                or (
                    row["status"] != "stopped"
                    and tx.now - row["heartbeat_at"] <= DEAD_AFTER_BEATS * row["heartbeat_interval"]
                )
            ):
                return []
            held = [Claim.from_row(r) for r in tx.all("claims_live_by_worker", worker=worker)]
            for claim in held:
                self._expire(tx, claim)
            return held
