"""A run's own pause, shared through the store so every host sees it.

A run pauses its workers by itself when an agent hits a rate limit or the network goes away
(`RunControl.pause_until`). Only that process knew: another terminal's `ralph status` showed
idle workers and ready tasks with no word of the pause. The run now writes the pause to the
`control` table, under a key of its own (`run-pause:<run>`), and deletes it when the pause ends
or the run ends. It is not `ralph pause`: `ralph resume` does not lift it and no other run's
workers obey it. A run killed while paused leaves its row behind; readers ignore a row whose
`until` has passed, so it never shows a pause that is over.
"""

from __future__ import annotations

import json
from typing import Any

from ralph.store.core import retried

RUN_PAUSE = "run-pause:"


class RunPauses:
    """Store methods for the pauses runs take on their own (a mixin of SQLStore)."""

    @retried
    def share_run_pause(
        self,
        run: str,
        *,
        until: float,
        reason: str,
        by: str | None = None,
        host: str | None = None,
        workers: list[str] | None = None,
    ) -> None:
        """Record (or extend) run `run`'s pause until `until` (epoch seconds)."""
        value = json.dumps(
            {"until": until, "reason": reason, "by": by, "host": host, "workers": workers or []}
        )
        store: Any = self
        with store.transaction() as tx:
            for row in tx.all("control_prefixed", pattern=RUN_PAUSE + "%"):
                if _until(row) <= tx.now:  # what killed runs left: over, so no longer kept
                    tx.run("control_delete", key=row["key"])
            tx.run("control_put", key=RUN_PAUSE + run, value=value, now=tx.now)
            store._event(
                tx, "run_paused", worker=by, run=run, host=host, reason=reason, until=until
            )

    @retried
    def end_run_pause(self, run: str) -> bool:
        """Delete run `run`'s pause record; False when there was none."""
        store: Any = self
        with store.transaction() as tx:
            gone = tx.run("control_delete", key=RUN_PAUSE + run)
            if gone:
                store._event(tx, "run_resumed", run=run)
            return bool(gone)

    @retried
    def run_pauses(self) -> list[dict[str, Any]]:
        """The runs' pauses in force, the longest first: {"run", "until", "reason", "by",
        "host", "workers", "since"} (epoch seconds)."""
        store: Any = self
        with store.transaction(write=False) as tx:
            rows = tx.all("control_prefixed", pattern=RUN_PAUSE + "%")
            now = tx.now
        found = [
            {**_data(row), "run": row["key"][len(RUN_PAUSE) :], "since": row["at"]}
            for row in rows
            if _until(row) > now
        ]
        return sorted(found, key=lambda p: (-p["until"], p["run"]))


def _data(row: Any) -> dict[str, Any]:
    value = row["value"]
    return json.loads(value) if isinstance(value, str) else dict(value)


def _until(row: Any) -> float:
    """When a record's pause ends (0 for a record without an end: none is ever written)."""
    return float(_data(row).get("until") or 0.0)
