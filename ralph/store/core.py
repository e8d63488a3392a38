"""What every part of the store shares: the `Tx` protocol, value checks and `StoreCore`.

`StoreCore` holds the backend hooks (`transaction`, `close`), the clock (`now`), the event
writer, the task read and the status transition; the per-concern mixins (tasks, claims,
workers, ...) build on it and `ralph.store.base.SQLStore` puts them together.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, Self, TypeVar

from ralph import errors
from ralph.models import (
    ID_PATTERN,
    ID_RULES,
    STATUSES,
    Claim,
    Task,
)

Row = Mapping[str, Any]
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# os.urandom underneath, like `secrets`, which would load OpenSSL (hashlib, hmac) at every CLI
# start; `random` is loaded by typer anyway.
_RANDOM = random.SystemRandom()
_UNSET: Any = object()
# States of an open task that `task_page` filters on besides the stored statuses.
PAGE_STATES = ("ready", "blocked", "running")


class Tx(Protocol):
    """One database transaction; `now` is its clock in epoch seconds."""

    now: float

    def one(self, name: str, /, **params: Any) -> Row | None: ...
    def all(self, name: str, /, **params: Any) -> list[Row]: ...
    def run(self, name: str, /, **params: Any) -> int: ...
    def many(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None: ...


def new_task_id() -> str:
    """`rl-` and eight random lowercase letters or digits (2.8e12 ids: no collisions at 1M)."""
    return "rl-" + "".join(_RANDOM.choice(_ALPHABET) for _ in range(8))


# One encoder for every dump: json.dumps with options builds a new encoder per call, which was
# a third of the time of adding 100k tasks.
_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def _dump(value: Any) -> str:
    return _encode(value)


def _strings(values: Iterable[Any] | None, what: str) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    out = []
    for v in values:
        if not isinstance(v, str) or not v.strip():
            raise errors.UsageError(f"invalid {what} {v!r}: expected a non-empty string")
        out.append(v.strip())
    return sorted(set(out))


def _check_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not ID_PATTERN.match(task_id):
        raise errors.UsageError(
            f"invalid task id {task_id!r}",
            hint=ID_RULES,
        )
    return task_id


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise errors.UsageError(
            f"unknown status {status!r}", hint="use one of: " + ", ".join(STATUSES)
        )
    return status


DEAD_AFTER_BEATS = 3  # a worker silent this many heartbeat intervals is dead

F = TypeVar("F", bound=Callable[..., Any])


def retried(method: F) -> F:
    """Mark a public store method as one operation that the backend may run whole again
    when the database fails transiently (`StoreCore._retry`: SQLite runs it once, PostgreSQL
    retries it; see PostgresStore._retry). Nested calls are retried by the outermost only."""

    @functools.wraps(method)
    def call(self: StoreCore, *args: Any, **kwargs: Any) -> Any:
        return self._retry(method, args, kwargs)

    call.retried = True  # type: ignore[attr-defined]
    return call  # type: ignore[return-value]


class StoreCore:
    """What every part of the store shares: the backend hooks, the clock, events, the task
    read and the status transition; each concern's mixin builds on these."""

    backend = "sql"
    max_renewals: int | None = None
    # The poison pill: a task whose claim lapses this often (its workers keep crashing or
    # hanging) ends `failed` instead of taking down worker after worker.
    max_expiries: int | None = 3

    def transaction(self, write: bool = True) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _retry(self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """Run one `@retried` store method; a backend that can fail transiently overrides this."""
        return method(self, *args, **kwargs)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @retried
    def now(self) -> float:
        """The store's clock (PostgreSQL's `now()`): compare database times with this only."""
        with self.transaction(write=False) as tx:
            return float(tx.now)

    @staticmethod
    def _event(
        tx: Tx,
        kind: str,
        task_id: str | None = None,
        worker: str | None = None,
        token: int | None = None,
        **data: Any,
    ) -> None:
        tx.run(
            "event_insert",
            now=tx.now,
            kind=kind,
            task_id=task_id,
            worker=worker,
            token=token,
            data=_dump(data),
        )

    def _task(self, tx: Tx, task_id: str) -> Task:
        row = tx.one("task_get", id=task_id)
        if row is None:
            raise errors.TaskNotFoundError(task_id)
        task = Task.from_row(row)
        task.claimed_by = row["claimed_by"]
        task.blocked_by = [r["id"] for r in tx.all("task_blockers", id=task_id)]
        return task

    def _set_done_ness(self, tx: Tx, task: Task, done: bool) -> None:
        """Keep the stored open-blocker/open-children counts right as `task` becomes (not) done."""
        delta = -1 if done else 1
        tx.run("dependents_adjust_blockers", id=task.id, delta=delta)
        if task.parent:
            tx.run("task_adjust_children", id=task.parent, delta=delta)

    def _end_live_claim(
        self, tx: Tx, task_id: str, state: str, reason: str | None = None, live: Claim | None = None
    ) -> None:
        """End the task's live claim, if any (`live`: the caller just read it in this tx)."""
        if live is None:
            row = tx.one("claim_live_for_task", task_id=task_id)
            live = Claim.from_row(row) if row is not None else None
        if live is not None:
            tx.run("claim_end", id=live.token, state=state, now=tx.now)
            tx.run("task_set_lease", id=task_id, lease_expires=0)
            kind = {"done": "released", "released": "released", "expired": "expired"}[state]
            extra = {"reason": reason} if reason else {}
            self._event(tx, kind, task_id, live.worker, live.token, **extra)

    def _live_claim(
        self, tx: Tx, task_id: str, worker: str | None, token: int | None, action: str
    ) -> Claim:
        """The caller's live claim on a task, or LeaseLostError/NotHolderError saying why not."""
        row = tx.one("claim_live_for_task", task_id=task_id)
        claim = Claim.from_row(row) if row else None
        if claim is None:
            self._task(tx, task_id)  # unknown id beats "no claim"
            raise errors.LeaseLostError(f"cannot {action} {task_id}: it has no live claim")
        if worker is not None and claim.worker != worker:
            raise errors.NotHolderError(
                f"cannot {action} {task_id}: it is claimed by {claim.worker}, not {worker}"
            )
        if token is not None and claim.token != token:
            raise errors.LeaseLostError(
                f"cannot {action} {task_id}: fencing token {token} is stale "
                f"(the live claim has token {claim.token})"
            )
        if claim.expires_at <= tx.now:
            raise errors.LeaseLostError(
                f"cannot {action} {task_id}: the lease of {claim.worker} expired"
            )
        return claim

    def _transition(self, tx: Tx, task: Task, status: str, live: Claim | None = None) -> list[str]:
        """Move `task` to `status`, keeping counters, claims and events right."""
        if status == task.status:
            raise errors.InvalidTransitionError(f"{task.id} is already {status}")
        if status == "done":
            if task.open_blockers:
                raise errors.BlockedError(
                    f"{task.id} is blocked by {', '.join(task.blocked_by)}",
                    hint="finish those first or `ralph unblock`",
                )
            open_kids = [
                r["id"] for r in tx.all("task_children", id=task.id) if r["status"] != "done"
            ]
            if open_kids:
                raise errors.InvalidTransitionError(
                    f"{task.id} has open children: {', '.join(open_kids[:5])}",
                    hint="finish or cancel them first",
                )
        tx.run(
            "task_set_status",
            id=task.id,
            status=status,
            now=tx.now,
            done_at=tx.now if status == "done" else None,
        )
        if status != "open":
            self._end_live_claim(
                tx, task.id, "done" if status == "done" else "released", reason=status, live=live
            )
        if status == "done" or task.status == "done":
            self._set_done_ness(tx, task, status == "done")
        if status == "done":
            self._event(tx, "done", task.id)
            ready = [r["id"] for r in tx.all("dependents_now_ready", id=task.id)]
            if task.parent:
                parent = tx.one("task_get", id=task.parent)
                if (
                    parent
                    and Task.from_row(parent).is_ready(tx.now)
                    and parent["open_blockers"] == 0
                ):
                    ready.append(task.parent)
            return ready
        self._event(tx, "reopened" if status == "open" else status, task.id)
        return []
