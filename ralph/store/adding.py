"""New tasks: one validated batch insert, its blockers, parents and follow-up cap checked."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from typing import Any

from ralph import errors
from ralph.models import Task
from ralph.store.core import (
    StoreCore,
    Tx,
    _check_id,
    _check_status,
    _dump,
    _strings,
    new_task_id,
    retried,
)


class AddStore(StoreCore):
    """New tasks."""

    @retried
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

    @retried
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
            status_of = self._check_references(tx, rows)
            if max_discovered is not None:
                self._check_discovered_cap(tx, rows, max_discovered)
            self._check_batch_cycles(rows, {r["id"]: r for r in rows})
            self._insert_batch(tx, rows, status_of)
            # Built from the rows just written: re-reading 100k tasks cost a fifth of the load.
            return [self._written(r, tx.now) for r in rows]

    @staticmethod
    def _check_references(tx: Tx, rows: list[dict[str, Any]]) -> dict[str, str]:
        """Refuse duplicate or existing ids and unknown blockers, parents or sources; the
        status of every task the batch names (stored ones read, and locked, in `tx`)."""
        batch = {r["id"]: r for r in rows}
        if len(batch) != len(rows):
            dup = next(i for i in batch if sum(r["id"] == i for r in rows) > 1)
            raise errors.UsageError(f"task id {dup!r} appears twice in the input")
        referenced = (
            {b for r in rows for b in r["blocked_by"]}
            | {r["parent"] for r in rows if r["parent"]}
            | {r["discovered_from"] for r in rows if r["discovered_from"]}  # locked too: the cap
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
        return status_of

    @staticmethod
    def _insert_batch(tx: Tx, rows: list[dict[str, Any]], status_of: Mapping[str, str]) -> None:
        """Insert the checked rows, their dependencies and `created` events, and count the
        open blockers and children they bring (their parents' counts included)."""
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
        created = {"kind": "created", "worker": None, "token": None, "data": "{}"}
        tx.many("event_insert", [{**created, "now": tx.now, "task_id": r["id"]} for r in rows])

    @staticmethod
    def _written(r: Mapping[str, Any], now: float) -> Task:
        """The task as `_insert_batch` just stored row `r`."""
        return Task(
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
            created_at=now,
            updated_at=now,
            done_at=r["done_at"],
            blocked_by=r["blocked_by"],
            discovered_from=r["discovered_from"],
        )

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
