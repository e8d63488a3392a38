"""Reading and changing tasks: get, list, ready, update, done, retry."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ralph import errors
from ralph.models import Task
from ralph.store.core import _UNSET, StoreCore, Tx, _check_status, _dump, _strings, retried


class TaskStore(StoreCore):
    """Reading and changing tasks."""

    @retried
    def get(self, task_id: str) -> Task:
        """One task with its blockers and current holder."""
        with self.transaction(write=False) as tx:
            return self._task(tx, task_id)

    @retried
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

    @retried
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

    @retried
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

    @retried
    def next_ready_at(self, capabilities: Iterable[str] | None = None) -> float | None:
        """When the next unblocked open task leaves its backoff or its holder's lease (epoch
        seconds, maybe already past); None when no unblocked open task is left for `capabilities`.

        A loop that finds nothing ready uses it to decide between waiting and stopping.
        """
        caps = None if capabilities is None else _dump(sorted(set(capabilities)))
        with self.transaction(write=False) as tx:
            row = tx.one("task_next_ready_at", caps=caps)
        return None if row is None or row["at"] is None else float(row["at"])

    @retried
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

    @retried
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

    @retried
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
