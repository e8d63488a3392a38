"""The store's domain logic, written once over named queries; backends supply transactions.

A backend subclasses `SQLStore` and implements `transaction()`, yielding a `Tx` that runs the
named queries of its own `.sql` file with one clock value (`tx.now`) for the whole transaction.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ralph import errors
from ralph.models import (
    ID_PATTERN,
    ID_RULES,
    STATUSES,
    Attempt,
    AttemptEnd,
    Claim,
    Event,
    Task,
    Worker,
)
from ralph.store.claimcheck import ClaimCheck

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


class SQLStore(ClaimCheck):
    """Tasks, dependencies, leased claims, workers, events and attempts over a SQL database."""

    backend = "sql"
    max_renewals: int | None = None
    # The poison pill: a task whose claim lapses this often (its workers keep crashing or
    # hanging) ends `failed` instead of taking down worker after worker.
    max_expiries: int | None = 3

    # -- backend hooks ---------------------------------------------------------------------
    def transaction(self, write: bool = True) -> AbstractContextManager[Tx]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------
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

    # -- tasks -----------------------------------------------------------------------------
    def add(
        self,
        title: str,
        *,
        description: str = "",
        priority: int = 0,
        parent: str | None = None,
        blocked_by: Iterable[str] = (),
        requires: Iterable[str] = (),
        labels: Iterable[str] = (),
        metadata: Mapping[str, Any] | None = None,
        id: str | None = None,
        status: str = "open",
        discovered_from: str | None = None,
        max_discovered: int | None = None,
    ) -> Task:
        """Add one task; its blockers, parent and `discovered_from` task must exist.

        `discovered_from` links a follow-up to the task whose agent found it; with
        `max_discovered` the add is refused when that task already has that many follow-ups.
        """
        spec = {
            "title": title,
            "description": description,
            "priority": priority,
            "parent": parent,
            "blocked_by": list(blocked_by),
            "requires": list(requires),
            "labels": list(labels),
            "metadata": dict(metadata or {}),
            "status": status,
        }
        if id is not None:
            spec["id"] = id
        if discovered_from is not None:
            spec["discovered_from"] = discovered_from
        return self.add_many([spec], max_discovered=max_discovered)[0]

    def add_many(
        self, specs: Iterable[Mapping[str, Any]], *, max_discovered: int | None = None
    ) -> list[Task]:
        """Add tasks in one transaction: JSONL-shaped dicts with optional `id`, `blocked_by`
        and `discovered_from`.

        Blockers, parents and discovered-from tasks may be other tasks of the same batch or
        tasks already stored. A cycle, an unknown id or a duplicate id refuses the whole batch,
        and so does a task getting more than `max_discovered` follow-ups (counted with the
        stored ones in this transaction, so agents adding at once cannot pass the cap).
        """
        rows = [self._normalise(spec, n) for n, spec in enumerate(specs, 1)]
        with self.transaction() as tx:
            batch = {r["id"]: r for r in rows}
            if len(batch) != len(rows):
                dup = next(i for i in batch if sum(r["id"] == i for r in rows) > 1)
                raise errors.UsageError(f"task id {dup!r} appears twice in the input")
            referenced = (
                {b for r in rows for b in r["blocked_by"]}
                | {r["parent"] for r in rows if r["parent"]}
                | {
                    r["discovered_from"] for r in rows if r["discovered_from"]
                }  # locked too: the cap
            )
            wanted = list(set(batch) | referenced)
            stored = {}
            for start in range(0, len(wanted), 5000):
                chunk = wanted[start : start + 5000]
                stored.update(
                    {r["id"]: r["status"] for r in tx.all("task_ids_existing", ids=_dump(chunk))}
                )
            clash = [i for i in batch if i in stored]
            if clash:
                raise errors.UsageError(
                    f"task id {clash[0]!r} already exists",
                    hint="pick another id or use `ralph update`",
                )
            status_of = {**stored, **{i: r["status"] for i, r in batch.items()}}
            for r in rows:
                for ref in [*r["blocked_by"], *([r["parent"]] if r["parent"] else [])]:
                    if ref not in status_of:
                        raise errors.TaskNotFoundError(ref)
                source = r["discovered_from"]
                if source and source not in status_of:
                    raise errors.TaskNotFoundError(source)
            if max_discovered is not None:
                self._check_discovered_cap(tx, rows, max_discovered)
            self._check_batch_cycles(rows, batch)
            children_open: dict[str, int] = defaultdict(int)
            for r in rows:
                if r["parent"] and r["status"] != "done":
                    children_open[r["parent"]] += 1
            for r in rows:
                r["open_blockers"] = sum(status_of[b] != "done" for b in r["blocked_by"])
                r["open_children"] = children_open.pop(r["id"], 0)
                r["now"] = tx.now
                r["done_at"] = tx.now if r["status"] == "done" else None
            tx.many("task_insert", rows)
            tx.many(
                "dep_insert",
                [{"blocker": b, "blocked": r["id"]} for r in rows for b in r["blocked_by"]],
            )
            for parent_id, n in children_open.items():
                tx.run("task_adjust_children", id=parent_id, delta=n)
            tx.many(
                "event_insert",
                [
                    {
                        "now": tx.now,
                        "kind": "created",
                        "task_id": r["id"],
                        "worker": None,
                        "token": None,
                        "data": "{}",
                    }
                    for r in rows
                ],
            )
            # Built from the rows just written: re-reading 100k tasks cost a fifth of the load.
            return [
                Task(
                    id=r["id"],
                    title=r["title"],
                    description=r["description"],
                    status=r["status"],
                    priority=r["priority"],
                    parent=r["parent"],
                    labels=json.loads(r["labels"]),
                    requires=json.loads(r["requires"]),
                    metadata=json.loads(r["metadata"]),
                    open_blockers=r["open_blockers"],
                    open_children=r["open_children"],
                    created_at=tx.now,
                    updated_at=tx.now,
                    done_at=r["done_at"],
                    blocked_by=r["blocked_by"],
                    discovered_from=r["discovered_from"],
                )
                for r in rows
            ]

    @staticmethod
    def _check_discovered_cap(tx: Tx, rows: list[dict[str, Any]], cap: int) -> None:
        """Refuse follow-ups beyond `cap` per discovering task, stored ones included."""
        adding: dict[str, int] = defaultdict(int)
        for r in rows:
            if r["discovered_from"]:
                adding[r["discovered_from"]] += 1
        for source, n in sorted(adding.items()):
            # The source's row is locked by task_ids_existing (PostgreSQL) or the whole store
            # by BEGIN IMMEDIATE (SQLite): concurrent adds for one task count one after another.
            row = tx.one("task_discovered_count", id=source)
            have = int(row["n"]) if row else 0
            if have + n > cap:
                raise errors.UsageError(
                    f"{source} already has {have} follow-up task{'s' if have != 1 else ''} "
                    f"(max_discovered = {cap}): not adding more",
                    hint="finish this task; note further work in your notes instead",
                )

    def _normalise(self, spec: Mapping[str, Any], n: int) -> dict[str, Any]:
        if not isinstance(spec, Mapping):
            raise errors.UsageError(f"task {n}: expected an object, got {type(spec).__name__}")
        title = spec.get("title")
        if not isinstance(title, str) or not title.strip():
            raise errors.UsageError(f"task {n}: a non-empty 'title' is required")
        priority = spec.get("priority", spec.get("score", 0)) or 0
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise errors.UsageError(f"task {n}: 'priority' must be an integer, got {priority!r}")
        metadata = spec.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise errors.UsageError(f"task {n}: 'metadata' must be an object")
        parent = spec.get("parent") or None
        task_id = _check_id(spec["id"]) if spec.get("id") else new_task_id()
        blocked_by = _strings(spec.get("blocked_by"), "blocker id")
        if task_id in blocked_by:
            raise errors.CycleError(f"{task_id} cannot be blocked by itself")
        if parent == task_id:
            raise errors.CycleError(f"{task_id} cannot be its own parent")
        discovered_from = spec.get("discovered_from") or None
        if discovered_from is not None and not isinstance(discovered_from, str):
            raise errors.UsageError(f"task {n}: 'discovered_from' must be a task id")
        if discovered_from == task_id:
            raise errors.UsageError(f"task {n}: {task_id} cannot be discovered from itself")
        return {
            "id": task_id,
            "title": title.strip(),
            "description": str(spec.get("description") or ""),
            "status": _check_status(spec.get("status") or "open"),
            "priority": priority,
            "parent": parent,
            "labels": _dump(_strings(spec.get("labels"), "label")),
            "requires": _dump(_strings(spec.get("requires"), "capability")),
            "metadata": _dump(dict(metadata)),
            "blocked_by": blocked_by,
            "discovered_from": discovered_from,
        }

    @staticmethod
    def _check_batch_cycles(rows: list[dict[str, Any]], batch: Mapping[str, Any]) -> None:
        """Kahn's algorithm over the batch's own edges (stored tasks cannot wait on new ones)."""
        waits: dict[str, int] = {i: 0 for i in batch}
        unblocks: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            for b in r["blocked_by"]:
                if b in batch:
                    waits[r["id"]] += 1
                    unblocks[b].append(r["id"])
        queue = deque(i for i, n in waits.items() if n == 0)
        seen = 0
        while queue:
            node = queue.popleft()
            seen += 1
            for nxt in unblocks[node]:
                waits[nxt] -= 1
                if waits[nxt] == 0:
                    queue.append(nxt)
        if seen != len(waits):
            stuck = sorted(i for i, n in waits.items() if n > 0)
            raise errors.CycleError("dependency cycle among: " + ", ".join(stuck[:6]))
        parents = {r["id"]: r["parent"] for r in rows}
        for start in parents:
            node, hops = parents.get(start), 0
            while node in parents and hops <= len(parents):
                if node == start:
                    raise errors.CycleError(f"parent cycle through {start}")
                node, hops = parents[node], hops + 1

    def get(self, task_id: str) -> Task:
        """One task with its blockers and current holder."""
        with self.transaction(write=False) as tx:
            return self._task(tx, task_id)

    def now(self) -> float:
        """The store's clock (PostgreSQL's `now()`): compare database times with this only."""
        with self.transaction(write=False) as tx:
            return float(tx.now)

    def get_many_known(self, ids: Sequence[str]) -> list[Task]:
        """The tasks among `ids` that exist (unknown ids are skipped, not an error)."""
        if len(ids) > 100:
            wanted = set(ids)
            return [t for t in self.list(limit=None) if t.id in wanted]
        found = []
        for task_id in ids:
            try:
                found.append(self.get(task_id))
            except errors.TaskNotFoundError:
                continue
        return found

    def get_many(self, ids: Sequence[str]) -> list[Task]:
        by_id = {t.id: t for t in self.list(limit=None)} if len(ids) > 1000 else None
        if by_id is None:
            return [self.get(i) for i in ids]
        return [by_id[i] for i in ids]

    def list(
        self,
        *,
        status: str | None = None,
        parent: str | None = None,
        label: str | None = None,
        limit: int | None = None,
    ) -> list[Task]:
        """Tasks in the order they were added, with `blocked_by` filled in."""
        if status is not None:
            _check_status(status)
        with self.transaction(write=False) as tx:
            rows = tx.all(
                "tasks_list",
                status=status,
                parent=parent,
                label=label,
                limit=-1 if limit is None else limit,
            )
            blockers: dict[str, list[str]] = defaultdict(list)
            for dep in tx.all("deps_all"):
                blockers[dep["blocked"]].append(dep["blocker"])
        tasks = []
        for row in rows:
            task = Task.from_row(row)
            task.claimed_by = row["claimed_by"]
            task.blocked_by = sorted(blockers.get(task.id, []))
            tasks.append(task)
        return tasks

    def ready(
        self, limit: int | None = 10, capabilities: Iterable[str] | None = None
    ) -> list[Task]:
        """Tasks a worker with `capabilities` could claim now (None: ignore requirements)."""
        caps = None if capabilities is None else _dump(sorted(set(capabilities)))
        with self.transaction(write=False) as tx:
            rows = tx.all(
                "tasks_ready", now=tx.now, caps=caps, limit=-1 if limit is None else limit
            )
        return [Task.from_row(r) for r in rows]

    def next_ready_at(self, capabilities: Iterable[str] | None = None) -> float | None:
        """When the next unblocked open task leaves its backoff or its holder's lease (epoch
        seconds, maybe already past); None when no unblocked open task is left for `capabilities`.

        A loop that finds nothing ready uses it to decide between waiting and stopping.
        """
        caps = None if capabilities is None else _dump(sorted(set(capabilities)))
        with self.transaction(write=False) as tx:
            row = tx.one("task_next_ready_at", caps=caps)
        return None if row is None or row["at"] is None else float(row["at"])

    def update(
        self,
        task_id: str,
        *,
        title: str | None = None,
        description: str | None = None,
        priority: int | None = None,
        labels: Iterable[str] | None = None,
        requires: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        status: str | None = None,
        parent: str | None = _UNSET,
    ) -> Task:
        """Change a task's fields; a status change follows the same rules as done/reopen."""
        if status is not None:
            _check_status(status)
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            tx.run(
                "task_update_fields",
                id=task_id,
                now=tx.now,
                title=title,
                description=description,
                priority=priority,
                labels=None if labels is None else _dump(_strings(labels, "label")),
                requires=None if requires is None else _dump(_strings(requires, "capability")),
                metadata=None if metadata is None else _dump(dict(metadata)),
            )
            if parent is not _UNSET and parent != task.parent:
                self._reparent(tx, task, parent)
            if status is not None and status != task.status:
                self._transition(tx, self._task(tx, task_id), status)
            self._event(tx, "updated", task_id, status=status)
            return self._task(tx, task_id)

    def _reparent(self, tx: Tx, task: Task, parent: str | None) -> None:
        if parent is not None:
            self._task(tx, parent)
            if task.id in {r["id"] for r in tx.all("parent_chain", id=parent)}:
                raise errors.CycleError(f"{parent} is {task.id} or one of its descendants")
        if task.status != "done":
            if task.parent:
                tx.run("task_adjust_children", id=task.parent, delta=-1)
            if parent:
                tx.run("task_adjust_children", id=parent, delta=1)
        tx.run("task_set_parent", id=task.id, parent=parent, now=tx.now)

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

    def done(
        self, task_id: str, *, token: int | None = None, worker: str | None = None
    ) -> tuple[Task, list[str]]:
        """Mark done and release its claim in one transaction; returns the task and ids unblocked.

        With `token` (the loop always passes it) the claim must still be live and carry that token.
        """
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            live = None
            if token is not None or worker is not None:
                live = self._live_claim(tx, task_id, worker, token, "complete")
            if task.status != "open":
                raise errors.InvalidTransitionError(f"{task_id} is {task.status}, not open")
            if task.open_blockers:
                raise errors.BlockedError(
                    f"{task_id} is blocked by {', '.join(task.blocked_by)}",
                    hint="finish those first or `ralph unblock`",
                )
            unblocked = self._transition(tx, task, "done", live)
        # What task_set_status and the claim's end just stored, without reading the row again.
        task.status, task.done_at, task.updated_at = "done", tx.now, tx.now
        task.lease_expires, task.claimed_by = 0.0, None
        return task, unblocked

    # -- dependencies ----------------------------------------------------------------------
    def block(self, task_id: str, blocker_id: str) -> Task:
        """Make `task_id` wait for `blocker_id`; refuses self-dependencies and cycles."""
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            blocker = self._task(tx, blocker_id)
            if task_id == blocker_id:
                raise errors.CycleError(f"{task_id} cannot be blocked by itself")
            if tx.one("dep_reaches", start=blocker_id, target=task_id):
                raise errors.CycleError(
                    f"{task_id} cannot wait on {blocker_id}: {blocker_id} already waits on "
                    f"{task_id}, directly or through other tasks"
                )
            if (
                tx.run("dep_insert", blocker=blocker_id, blocked=task_id)
                and blocker.status != "done"
            ):
                tx.run("task_adjust_blockers", id=task_id, delta=1)
            self._event(tx, "blocked", task_id, blocker=blocker_id)
            return self._task(tx, task.id)

    def unblock(self, task_id: str, blocker_id: str) -> Task:
        """Remove the dependency of `task_id` on `blocker_id`."""
        with self.transaction() as tx:
            self._task(tx, task_id)
            blocker = self._task(tx, blocker_id)
            if not tx.run("dep_delete", blocker=blocker_id, blocked=task_id):
                raise errors.NotFoundError(f"{task_id} is not blocked by {blocker_id}")
            if blocker.status != "done":
                tx.run("task_adjust_blockers", id=task_id, delta=-1)
            self._event(tx, "unblocked", task_id, blocker=blocker_id)
            return self._task(tx, task_id)

    def relations(self, task_id: str) -> dict[str, list[dict[str, str]]]:
        """Blockers, dependents and children of a task, each with its status."""
        with self.transaction(write=False) as tx:
            self._task(tx, task_id)
            return {
                "blocked_by": [dict(r) for r in tx.all("task_blockers", id=task_id)],
                "blocks": [dict(r) for r in tx.all("task_dependents", id=task_id)],
                "children": [dict(r) for r in tx.all("task_children", id=task_id)],
            }

    # -- claims ----------------------------------------------------------------------------
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

    def active_claim(self, task_id: str) -> Claim | None:
        """The task's live claim, if its lease has not run out (tx: getActiveClaim)."""
        with self.transaction(write=False) as tx:
            self._task(tx, task_id)
            row = tx.one("claim_live_for_task", task_id=task_id)
            return Claim.from_row(row) if row and row["expires_at"] > tx.now else None

    def get_claim(self, claim_id: int) -> Claim:
        with self.transaction(write=False) as tx:
            row = tx.one("claim_get", id=claim_id)
        if row is None:
            raise errors.ClaimNotFoundError(f"no claim with id {claim_id}")
        return Claim.from_row(row)

    def claims(self) -> list[Claim]:
        """Claims not yet released or expired (some may be past their expiry, awaiting sweep)."""
        with self.transaction(write=False) as tx:
            return [Claim.from_row(r) for r in tx.all("claims_live")]

    def expired(self) -> list[Claim]:
        """Live claims whose lease has run out (tx: getExpired)."""
        with self.transaction(write=False) as tx:
            return [Claim.from_row(r) for r in tx.all("claims_expired", now=tx.now)]

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

    # -- workers ---------------------------------------------------------------------------
    def register_worker(
        self,
        name: str,
        *,
        capabilities: Iterable[str] = (),
        pid: int | None = None,
        host: str | None = None,
        heartbeat_interval: float = 10.0,
        dead_pid: int | None = None,
        sandbox: str | None = None,
    ) -> Worker:
        """Register (or re-register, keeping its id) a worker by name.

        `dead_pid`: the caller found that the name's previous holder, pid `dead_pid` on `host`,
        no longer runs. If the row still names that process, its live claims are expired in
        this transaction: a worker restarted under its name takes its task back at once
        instead of waiting out its own dead claim's lease."""
        caps = _dump(_strings(capabilities, "capability"))
        with self.transaction() as tx:
            row = tx.one("worker_by_name", name=name)
            if (
                row is not None
                and dead_pid is not None
                and row["pid"] == dead_pid
                and row["host"] == host
            ):
                for held in tx.all("claims_live_by_worker", worker=name):
                    self._expire(tx, Claim.from_row(held), reason="holder_dead", pid=dead_pid)
            params = {
                "pid": pid,
                "host": host,
                "capabilities": caps,
                "now": tx.now,
                "heartbeat_interval": heartbeat_interval,
                "sandbox": sandbox,
            }
            if row is None:
                worker_id = "worker-" + os.urandom(3).hex()
                tx.run("worker_insert", id=worker_id, name=name, **params)
            else:
                worker_id = row["id"]
                tx.run("worker_restart", id=worker_id, **params)
            self._event(tx, "worker_started", worker=name, pid=pid, host=host)
            return Worker.from_row(tx.one("worker_by_id", id=worker_id))

    def heartbeat(
        self, worker_id: str, *, status: str | None = None, current_task: str | None = None
    ) -> bool:
        """Record that the worker is alive; returns True when someone asked it to stop."""
        with self.transaction() as tx:
            row = tx.one(
                "worker_heartbeat",
                id=worker_id,
                now=tx.now,
                status=status,
                current_task=current_task,
            )
            if row is None:
                raise errors.WorkerNotFoundError(f"no worker with id {worker_id!r}")
            return bool(row["stop_requested"])

    def stop_worker(self, name_or_id: str, *, stopped: bool = False) -> Worker:
        """Ask a worker to stop (it sees this at its next heartbeat), or mark it stopped."""
        with self.transaction() as tx:
            row = tx.one("worker_by_name", name=name_or_id) or tx.one("worker_by_id", id=name_or_id)
            if row is None:
                raise errors.WorkerNotFoundError(
                    f"no worker named {name_or_id!r}", hint="`ralph worker list --all` shows them"
                )
            if stopped:
                tx.run(
                    "worker_set_status",
                    id=row["id"],
                    status="stopped",
                    current_task=None,
                    now=tx.now,
                )
                self._event(tx, "worker_stopped", worker=row["name"])
            else:
                tx.run("worker_request_stop", id=row["id"])
            return Worker.from_row(tx.one("worker_by_id", id=row["id"]))

    def workers(self) -> list[Worker]:
        with self.transaction(write=False) as tx:
            return [Worker.from_row(r) for r in tx.all("workers_list")]

    # -- events and attempts ---------------------------------------------------------------
    def events(
        self,
        *,
        task_id: str | None = None,
        kind: str | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[Event]:
        """The audit log, oldest first."""
        with self.transaction(write=False) as tx:
            rows = tx.all(
                "events_list",
                task_id=task_id,
                kind=kind,
                after=after,
                limit=-1 if limit is None else limit,
            )
        return [Event.from_row(r) for r in rows]

    def recent_events(self, limit: int = 10) -> list[Event]:
        with self.transaction(write=False) as tx:
            return [Event.from_row(r) for r in tx.all("events_recent", limit=limit)]

    def status_counts(self) -> dict[str, int]:
        with self.transaction(write=False) as tx:
            counts = {r["status"]: r["n"] for r in tx.all("status_counts")}
        return {s: counts.get(s, 0) for s in STATUSES}

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
            self._transition(tx, task, "done")
            self._event(tx, "reconciled", task_id, worker, commit=commit)
            return True

    def close_crashed_attempts(self, task_id: str, token: int | None = None) -> list[Attempt]:
        """Close the attempts of `task_id` (of claim `token`) that never finished: their worker
        died. They count no attempt: the claim's expiry already counted toward the poison pill."""
        with self.transaction() as tx:
            return self._close_crashed(tx, task_id, token)

    @staticmethod
    def _close_crashed(tx: Tx, task_id: str, token: int | None) -> list[Attempt]:
        rows = tx.all(
            "attempts_close_crashed",
            task_id=task_id,
            token=token,
            now=tx.now,
            summary="the worker stopped answering while this attempt ran (crash or hang)",
        )
        return [Attempt.from_row(r) for r in rows]

    # -- run-wide switches (every host sees them) --------------------------------------------
    def pause(self, reason: str, *, until: float | None = None, by: str | None = None) -> None:
        """Ask every worker of every host to take no new task (until `until`, or `resume`)."""
        value = _dump({"until": until, "reason": reason, "by": by})
        with self.transaction() as tx:
            tx.run("control_put", key="pause", value=value, now=tx.now)
            self._event(tx, "paused", worker=by, reason=reason, until=until)

    def resume(self, *, by: str | None = None) -> bool:
        """Lift a pause; False when none was set."""
        with self.transaction() as tx:
            gone = tx.run("control_delete", key="pause")
            if gone:
                self._event(tx, "resumed", worker=by)
            return bool(gone)

    def note_event(
        self, kind: str, *, task_id: str | None = None, worker: str | None = None, **data: Any
    ) -> None:
        """Write an event that changes no task (a notification that could not be sent)."""
        with self.transaction() as tx:
            self._event(tx, kind, task_id, worker, **data)

    def paused(self) -> dict[str, Any] | None:
        """The pause in force ({"until", "reason", "by", "since"}), or None."""
        with self.transaction(write=False) as tx:
            row = tx.one("control_get", key="pause")
            now = tx.now
        if row is None:
            return None
        data = json.loads(row["value"]) if isinstance(row["value"], str) else dict(row["value"])
        if data.get("until") is not None and data["until"] <= now:
            return None
        return {**data, "since": row["at"]}

    def attempts(self, task_id: str | None = None) -> list[Attempt]:
        with self.transaction(write=False) as tx:
            return [Attempt.from_row(r) for r in tx.all("attempts_list", task_id=task_id)]

    def retry(self, task_id: str) -> Task:
        """Put a failed task back in the queue at once; its attempts stay counted, and its
        poison-pill count of lost claims starts again."""
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            if task.status != "failed":
                raise errors.InvalidTransitionError(
                    f"{task_id} is {task.status}, not failed", hint="only failed tasks are retried"
                )
            tx.run("task_retry", id=task_id, now=tx.now)
            self._event(tx, "retried", task_id, attempts=task.attempts)
            return self._task(tx, task_id)

    # -- reads for dashboards (one short read transaction each) ----------------------------
    def task_page(
        self,
        *,
        status: str | None = None,
        label: str | None = None,
        capability: str | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Task], int]:
        """One page of tasks, newest first, and how many match in all.

        status: a stored status, or a state of an open task: ready, blocked, running.
        text: a task id, or words found (case-insensitively) in the title or description.
        """
        state = None
        if status in PAGE_STATES:
            status, state = None, status
        elif status is not None:
            _check_status(status)
        words = (text or "").strip()
        escaped = words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params = {
            "status": status,
            "state": state,
            "label": label or None,
            "label_json": _dump(label) if label else None,
            "capability": capability or None,
            "capability_json": _dump(capability) if capability else None,
            "text": words or None,
            "pattern": f"%{escaped}%",
        }
        with self.transaction(write=False) as tx:
            rows = tx.all("tasks_page", now=tx.now, limit=limit, offset=offset, **params)
            if label or capability or words:
                total = int(tx.one("tasks_page_count", now=tx.now, **params)["n"])
            elif state:  # counted from indexes, as the overview does, not by a scan
                total = self._queue_counts(tx)[state]
            else:
                counts = {r["status"]: int(r["n"]) for r in tx.all("status_counts")}
                total = counts.get(status, 0) if status else sum(counts.values())
            ids = _dump([r["id"] for r in rows])
            deps = tx.all("deps_of_tasks", ids=ids) if rows else []
        blockers: dict[str, list[str]] = defaultdict(list)
        for dep in deps:
            blockers[dep["blocked"]].append(dep["blocker"])
        tasks = []
        for row in rows:
            task = Task.from_row(row)
            task.claimed_by = row["claimed_by"]
            task.blocked_by = sorted(blockers.get(task.id, []))
            tasks.append(task)
        return tasks, total

    def queue_counts(self) -> dict[str, int]:
        """Open tasks by state: ready, blocked (blockers or children open), running, retry_wait."""
        with self.transaction(write=False) as tx:
            return self._queue_counts(tx)

    @staticmethod
    def _queue_counts(tx: Tx) -> dict[str, int]:
        row = tx.one("queue_counts", now=tx.now)
        assert row is not None
        n = {k: int(row[k] or 0) for k in row.keys()}  # noqa: SIM118 (sqlite3.Row)
        return {
            "ready": n["unblocked"] - n["running_unblocked"] - n["retry_wait"],
            "blocked": n["open"] - n["unblocked"],
            "running": n["running"],
            "retry_wait": n["retry_wait"],
        }

    def spend_by_hour(self, since: float) -> list[dict[str, Any]]:
        """Attempts started since `since` per hour (epoch of the hour) and agent: how many,
        how many succeeded, and their cost."""
        with self.transaction(write=False) as tx:
            rows = tx.all("attempts_hourly", since=since)
        return [
            {
                "hour": int(r["hour"]),
                "agent": r["agent"],
                "attempts": int(r["attempts"]),
                "succeeded": int(r["succeeded"] or 0),
                "cost_usd": float(r["cost_usd"] or 0.0),
            }
            for r in rows
        ]

    def spend_by_worker(self, since: float) -> dict[str, dict[str, Any]]:
        """Attempts (counted), launches and cost per worker name since `since`; cost None
        when none was reported, with how many finished launches had no cost."""
        with self.transaction(write=False) as tx:
            rows = tx.all("attempts_by_worker", since=since)
        return {
            r["worker"]: {
                "attempts": int(r["attempts"] or 0),
                "launches": int(r["launches"]),
                "cost_usd": None if r["cost_usd"] is None else float(r["cost_usd"]),
                "unknown_cost": int(r["unknown_cost"] or 0),
            }
            for r in rows
        }

    def running_attempts(self) -> list[Attempt]:
        """Attempts that have not ended (their agents are running, or their workers died)."""
        with self.transaction(write=False) as tx:
            return [Attempt.from_row(r) for r in tx.all("attempts_running")]
