"""`ralph status`: one snapshot of the store: counts, live claims, workers, cost, recent events."""

from __future__ import annotations

import time
from typing import Any

from ralph.models import iso
from ralph.ops.stats import cost_of, counts_of, start_of_today
from ralph.store.base import SQLStore

RECENT_EVENTS = 8
_UNREAD: Any = object()


def _spend(attempts: list[Any]) -> dict[str, Any]:
    return {
        **counts_of(attempts),
        **cost_of(attempts),
        "input_tokens": sum(a.input_tokens or 0 for a in attempts),
        "output_tokens": sum(a.output_tokens or 0 for a in attempts),
    }


def snapshot(store: SQLStore, *, events: int = RECENT_EVENTS, now: float | None = None) -> dict:
    """Everything `ralph status` shows, as a JSON-ready dict with stable keys."""
    now = time.time() if now is None else now
    counts = store.status_counts()
    open_tasks = store.list(status="open")
    ready = sum(t.is_ready(now) for t in open_tasks)
    claimed = sum(t.lease_expires > now for t in open_tasks)
    blocked = sum(t.open_blockers > 0 or t.open_children > 0 for t in open_tasks)
    waiting = sum(
        t.not_before > now and t.lease_expires <= now and not (t.open_blockers or t.open_children)
        for t in open_tasks
    )
    claims = [
        {
            "task_id": c.task_id,
            "worker": c.worker,
            "token": c.token,
            "expires_at": iso(c.expires_at),
            "lease_left_s": round(c.expires_at - now, 1),
            "expired": c.expires_at <= now,
        }
        for c in store.claims()
    ]
    workers = [_worker(w.to_dict(now), claims) for w in store.workers()]
    attempts = store.attempts()
    today = start_of_today(now)
    operator = store.paused()
    return {
        "at": iso(now),
        "counts": {**counts, "total": sum(counts.values())},
        "ready": ready,
        "blocked": blocked,
        "claimed": claimed,
        "retry_wait": waiting,
        "claims": claims,
        "workers": [w for w in workers if w["state"] not in ("stopped", "dead")],
        "workers_gone": sum(w["state"] in ("stopped", "dead") for w in workers),
        "running": [a.to_dict() for a in attempts if a.ended_at is None],
        "spend": {
            "today": _spend([a for a in attempts if a.started_at >= today]),
            "total": _spend(attempts),
        },
        "events": [e.to_dict() for e in store.recent_events(events)],
        "paused": _pause(operator),
        "pause": pause_in_force(store, operator),
    }


def _worker(worker: dict[str, Any], claims: list[dict[str, Any]]) -> dict[str, Any]:
    """Busy means holding a live claim, as on the web page: a worker row's status and task are
    only as fresh as its last heartbeat (a task given back a moment ago still shows there)."""
    if worker["state"] in ("idle", "busy"):
        held = [c["task_id"] for c in claims if c["worker"] == worker["name"] and not c["expired"]]
        worker["state"] = "busy" if held else "idle"
        worker["current_task"] = held[0] if held else None
    return worker


def _pause(pause: dict[str, Any] | None) -> dict[str, Any] | None:
    """The pause set with `ralph pause` or the web page: who, why, since and until when."""
    if pause is None:
        return None
    return {
        "by": pause.get("by"),
        "reason": pause.get("reason"),
        "since": iso(pause.get("since")),
        "until": iso(pause.get("until")),
    }


def pause_in_force(store: SQLStore, operator: Any = _UNREAD) -> dict[str, Any] | None:
    """The pause holding workers now, in one shape whoever took it (None when none):
    `ralph pause` (source "operator", every worker of every host, until `ralph resume` or
    its end) first, else the longest pause a run took for a rate limit or a network outage
    (source "run": that run's `workers`, lifting itself at `until`)."""
    operator = store.paused() if operator is _UNREAD else operator
    if operator is not None:
        return {
            "source": "operator",
            **_pause(operator),  # type: ignore[dict-item]
            "host": None,
            "workers": None,
        }
    runs = store.run_pauses()
    if not runs:
        return None
    run = runs[0]
    return {
        "source": "run",
        "by": run.get("by"),
        "reason": run.get("reason"),
        "since": iso(run.get("since")),
        "until": iso(run.get("until")),
        "host": run.get("host"),
        "workers": run.get("workers") or [],
    }
