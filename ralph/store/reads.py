"""Read models for the dashboard, report and stats (one short read each)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ralph.models import STATUSES, Attempt, Task
from ralph.store.core import PAGE_STATES, StoreCore, Tx, _check_status, _dump, retried


class ReadStore(StoreCore):
    """Read models for the dashboard, report and stats (one short read each).."""

    @retried
    def status_counts(self) -> dict[str, int]:
        with self.transaction(write=False) as tx:
            counts = {r["status"]: r["n"] for r in tx.all("status_counts")}
        return {s: counts.get(s, 0) for s in STATUSES}

    @retried
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

    @retried
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

    @retried
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

    @retried
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

    @retried
    def running_attempts(self) -> list[Attempt]:
        """Attempts that have not ended (their agents are running, or their workers died)."""
        with self.transaction(write=False) as tx:
            return [Attempt.from_row(r) for r in tx.all("attempts_running")]
