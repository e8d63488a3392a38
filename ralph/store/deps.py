"""Dependencies between tasks: block, unblock, relations."""

from __future__ import annotations

from ralph import errors
from ralph.models import Task
from ralph.store.core import StoreCore, retried


class DependencyStore(StoreCore):
    """Dependencies between tasks."""

    @retried
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

    @retried
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

    @retried
    def relations(self, task_id: str) -> dict[str, list[dict[str, str]]]:
        """Blockers, dependents and children of a task, each with its status."""
        with self.transaction(write=False) as tx:
            self._task(tx, task_id)
            return {
                "blocked_by": [dict(r) for r in tx.all("task_blockers", id=task_id)],
                "blocks": [dict(r) for r in tx.all("task_dependents", id=task_id)],
                "children": [dict(r) for r in tx.all("task_children", id=task_id)],
            }
