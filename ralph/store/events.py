"""The audit log and the run-wide pause every host sees."""

from __future__ import annotations

import json
from typing import Any

from ralph.models import Event
from ralph.store.core import StoreCore, _dump, retried


class EventStore(StoreCore):
    """The audit log and the run-wide pause every host sees.."""

    @retried
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

    @retried
    def recent_events(self, limit: int = 10) -> list[Event]:
        with self.transaction(write=False) as tx:
            return [Event.from_row(r) for r in tx.all("events_recent", limit=limit)]

    @retried
    def note_event(
        self, kind: str, *, task_id: str | None = None, worker: str | None = None, **data: Any
    ) -> None:
        """Write an event that changes no task (a notification that could not be sent)."""
        with self.transaction() as tx:
            self._event(tx, kind, task_id, worker, **data)

    @retried
    def pause(self, reason: str, *, until: float | None = None, by: str | None = None) -> None:
        """Ask every worker of every host to take no new task (until `until`, or `resume`)."""
        value = _dump({"until": until, "reason": reason, "by": by})
        with self.transaction() as tx:
            tx.run("control_put", key="pause", value=value, now=tx.now)
            self._event(tx, "paused", worker=by, reason=reason, until=until)

    @retried
    def resume(self, *, by: str | None = None) -> bool:
        """Lift a pause; False when none was set."""
        with self.transaction() as tx:
            gone = tx.run("control_delete", key="pause")
            if gone:
                self._event(tx, "resumed", worker=by)
            return bool(gone)

    @retried
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
