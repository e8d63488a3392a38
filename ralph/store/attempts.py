"""Attempts: one row per agent launch, its outcome and cost."""

from __future__ import annotations

from typing import Any

from ralph import errors
from ralph.models import Attempt, AttemptEnd
from ralph.store.core import StoreCore, Tx, retried


class AttemptStore(StoreCore):
    """Attempts."""

    @retried
    def start_attempt(
        self,
        task_id: str,
        *,
        attempt: int,
        worker: str,
        agent: str,
        run_dir: str | None = None,
        token: int | None = None,
        host: str | None = None,
        kind: str = "task",
        model: str | None = None,
    ) -> Attempt:
        """Record a launch: `kind` is "task", or "resolve" for a conflict resolution (never
        counted as a re-run of the task)."""
        with self.transaction() as tx:
            self._task(tx, task_id)
            return Attempt.from_row(
                tx.one(
                    "attempt_insert",
                    task_id=task_id,
                    attempt=attempt,
                    worker=worker,
                    agent=agent,
                    now=tx.now,
                    run_dir=run_dir,
                    token=token,
                    host=host,
                    kind=kind,
                    model=model,
                )
            )

    @retried
    def finish_attempt(self, attempt_id: int, *, outcome: str, **fields: Any) -> Attempt:
        """Record how an attempt ended (fields: see `AttemptEnd`)."""
        with self.transaction() as tx:
            return self._finish_attempt(tx, attempt_id, AttemptEnd(outcome=outcome, **fields))

    @staticmethod
    def _finish_attempt(tx: Tx, attempt_id: int, end: AttemptEnd) -> Attempt:
        row = tx.one("attempt_finish", id=attempt_id, now=tx.now, **end.params())
        if row is None:
            raise errors.NotFoundError(f"no attempt with id {attempt_id}")
        return Attempt.from_row(row)

    @staticmethod
    def _close_crashed(tx: Tx, task_id: str, token: int | None) -> list[Attempt]:
        """Close the attempts of `task_id` (of claim `token`) that never finished: their worker
        died. They count no attempt: the claim's expiry already counted toward the poison pill."""
        rows = tx.all(
            "attempts_close_crashed",
            task_id=task_id,
            token=token,
            now=tx.now,
            summary="the worker stopped answering while this attempt ran (crash or hang)",
        )
        return [Attempt.from_row(r) for r in rows]

    @retried
    def attempts(self, task_id: str | None = None) -> list[Attempt]:
        with self.transaction(write=False) as tx:
            return [Attempt.from_row(r) for r in tx.all("attempts_list", task_id=task_id)]
