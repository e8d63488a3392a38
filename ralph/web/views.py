"""What each page shows, as plain dicts built from store calls (no web framework here).

Each store call is one short read transaction, so the dashboard never holds a lock that a
worker in another process or on another host would wait for.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ralph import errors
from ralph.models import STATUSES, Task, iso
from ralph.ops import logs
from ralph.store.base import PAGE_STATES, SQLStore
from ralph.web.gitinfo import commit_info

PAGE_SIZE = 50
RECENT_EVENTS = 30
CHART_HOURS = 48
CHART_DAYS = 14
FILTER_STATUSES = (*STATUSES, *PAGE_STATES)


def attempt_sandbox(run_dir: str | None) -> str | None:
    """The policy a running attempt is confined by ("sandbox: bwrap, network=allow (1 host)" or
    "unsandboxed"), as its worker wrote it in the run dir; None when not known here."""
    try:
        return (Path(run_dir or "") / "sandbox.txt").read_text().strip() or None
    except OSError:
        return None


def overview(store: SQLStore, now: float | None = None) -> dict[str, Any]:
    """Workers with what they run, the queue, the pause switch and the last events."""
    now = time.time() if now is None else now
    workers = [w for w in store.workers() if w.state(now) != "stopped"]
    # Busy means holding a live claim: the claims table is what the fencing is built on, while
    # a worker row's status is only as fresh as its last heartbeat.
    held = {c.worker: c for c in store.claims() if c.expires_at > now}
    running = {(a.worker, a.task_id): a for a in store.running_attempts()}
    since = min((w.started_at for w in workers), default=now)
    spent = store.spend_by_worker(since) if workers else {}
    rows = []
    for w in workers:
        state = w.state(now)
        claim = held.get(w.name)
        if state in ("idle", "busy"):
            state = "busy" if claim else "idle"
        attempt = running.get((w.name, claim.task_id)) if claim else None
        rows.append(
            {
                "name": w.name,
                "state": state,
                "host": w.host or "",
                "pid": w.pid,
                "capabilities": w.capabilities,
                "task": claim.task_id if claim else None,
                "attempt": attempt.attempt if attempt else None,
                "agent": attempt.agent if attempt else None,
                "since": attempt.started_at if attempt else None,
                "elapsed_s": round(now - attempt.started_at, 1) if attempt else None,
                "cost_usd": spent.get(w.name, {}).get("cost_usd"),  # None: unknown
                "stop_requested": w.stop_requested,
                # what its worker registered (idle ones too); else its attempt's run dir
                "sandbox": w.sandbox or (attempt_sandbox(attempt.run_dir) if attempt else None),
            }
        )
    counts = store.status_counts()
    events = store.recent_events(RECENT_EVENTS)
    return {
        "now": now,
        "workers": rows,
        "counts": {**counts, "total": sum(counts.values())},
        "queue": store.queue_counts(),
        "paused": store.paused(),
        "run_paused": next(iter(store.run_pauses()), None),  # a run's own rate-limit pause
        "events": [event_dict(e) for e in reversed(events)],
        "last_event": events[-1].id if events else 0,
    }


def event_dict(event: Any) -> dict[str, Any]:
    """An event as the page shows it (and as the live stream sends it)."""
    detail = ", ".join(
        f"{k}={v}" for k, v in sorted(event.data.items()) if v is not None and v != ""
    )
    return {
        "id": event.id,
        "at": iso(event.at),
        "ts": event.at,
        "kind": event.kind,
        "task_id": event.task_id,
        "worker": event.worker,
        "detail": detail[:300],
    }


def series(store: SQLStore, now: float | None = None) -> dict[str, Any]:
    """Chart data by agent: tasks done and USD per hour (last 48), USD per local day (last 14)."""
    now = time.time() if now is None else now
    hour_now = int(now // 3600 * 3600)
    first_hour = hour_now - (CHART_HOURS - 1) * 3600
    rows = store.spend_by_hour(since=now - CHART_DAYS * 86400)
    hours = [first_hour + i * 3600 for i in range(CHART_HOURS)]
    agents = sorted({r["agent"] for r in rows})
    done = {a: [0] * CHART_HOURS for a in agents}
    cost = {a: [0.0] * CHART_HOURS for a in agents}
    days: dict[tuple[str, str], float] = defaultdict(float)
    for r in rows:
        days[time.strftime("%Y-%m-%d", time.localtime(r["hour"])), r["agent"]] += r["cost_usd"]
        i = (r["hour"] - first_hour) // 3600
        if 0 <= i < CHART_HOURS:
            done[r["agent"]][i] += r["succeeded"]
            cost[r["agent"]][i] += r["cost_usd"]
    day_keys = [
        time.strftime("%Y-%m-%d", time.localtime(now - k * 86400))
        for k in range(CHART_DAYS - 1, -1, -1)
    ]
    return {
        "hours": hours,
        "agents": agents,
        "done": done,
        "cost": {a: [round(v, 6) for v in vals] for a, vals in cost.items()},
        "days": day_keys,
        "day_cost": {a: [round(days.get((d, a), 0.0), 6) for d in day_keys] for a in agents},
        "total_cost": round(sum(r["cost_usd"] for r in rows), 6),
        "totals": _totals(store.spend_by_worker(now - CHART_DAYS * 86400).values()),
    }


def _totals(groups: Any) -> dict[str, Any]:
    """The charts' window in the numbers `ralph stats` gives: counted attempts, launches, the
    known cost (None when none is known, never 0) and the launches of unknown cost."""
    items = list(groups)
    known = [g["cost_usd"] for g in items if g["cost_usd"] is not None]
    return {
        "attempts": sum(g["attempts"] for g in items),
        "launches": sum(g["launches"] for g in items),
        "cost_usd": round(sum(known), 6) if known else None,
        "unknown_cost": sum(g["unknown_cost"] for g in items),
    }


def task_list(store: SQLStore, query: dict[str, str], now: float | None = None) -> dict[str, Any]:
    """One page of the task list with its filters (status, label, capability, text)."""
    now = time.time() if now is None else now
    status = query.get("status") or None
    if status is not None and status not in FILTER_STATUSES:
        raise errors.UsageError(f"unknown status {status!r}")
    try:
        page = max(1, int(query.get("page") or 1))
    except ValueError:
        page = 1
    filters = {
        "status": status,
        "label": (query.get("label") or "").strip() or None,
        "capability": (query.get("capability") or "").strip() or None,
        "text": (query.get("q") or "").strip() or None,
    }
    tasks, total = store.task_page(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, **filters)
    pages = max(1, -(-total // PAGE_SIZE))
    return {
        "tasks": [task_row(t, now) for t in tasks],
        "total": total,
        "page": page,
        "pages": pages,
        "filters": {k: v or "" for k, v in filters.items()} | {"q": filters["text"] or ""},
        "statuses": FILTER_STATUSES,
    }


def task_state(task: Task, now: float) -> str:
    """The one word the list shows beside the status of an open task."""
    if task.status != "open":
        return task.status
    if task.lease_expires > now:
        return "running"
    if task.open_blockers or task.open_children:
        return "blocked"
    if task.not_before > now:
        return "retry wait"
    return "ready"


def task_row(task: Task, now: float) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "status": task.status,
        "state": task_state(task, now),
        "priority": task.priority,
        "labels": task.labels,
        "requires": task.requires,
        "attempts": task.attempts,
        "claimed_by": task.claimed_by if task.lease_expires > now else None,
        "blocked_by": task.blocked_by,
        "updated_at": iso(task.updated_at),
    }


def task_detail(
    store: SQLStore,
    task_id: str,
    *,
    repo: Path | None,
    attempt: int | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Everything about one task; the transcript of one attempt (default: the last)."""
    now = time.time() if now is None else now
    task = store.get(task_id)
    relations = store.relations(task_id)
    attempts = store.attempts(task_id)
    claim = store.active_claim(task_id)
    history = [event_dict(e) for e in store.events(task_id=task_id)]
    chosen = None
    if attempts:
        n = len(attempts) if attempt is None else attempt
        if 1 <= n <= len(attempts):
            chosen = attempt_view(attempts[n - 1], n, len(attempts), task_id)
    return {
        "task": {**task_row(task, now), **task.to_dict(now)},
        "state": task_state(task, now),
        "relations": relations,
        "parent": task.parent,
        "claim": claim.to_dict() if claim else None,
        "attempts": [
            {
                **a.to_dict(),
                "n": i,
                "running": a.ended_at is None,
                "duration_s": round((a.ended_at or now) - a.started_at, 1),
            }
            for i, a in enumerate(attempts, 1)
        ],
        "chosen": chosen,
        "history": history,
        "commit": commit_info(repo, task.commit_sha, task.id if task.status == "done" else None),
        "last_event": history[-1]["id"] if history else 0,
    }


def attempt_view(record: Any, n: int, total: int, task_id: str) -> dict[str, Any]:
    """The prompt, turns, stderr, verify output and result of one attempt, from its run folder
    (which exists only on the host that ran it)."""
    run_dir = Path(record.run_dir) if record.run_dir else None
    here = run_dir is not None and run_dir.is_dir()
    view: dict[str, Any] = {
        "n": n,
        "of": total,
        "record": record.to_dict(),
        "running": record.ended_at is None,
        "run_dir": str(run_dir) if run_dir else None,
        "available": here,
        "host": record.host,
    }
    if not here:
        return view
    stdout = (run_dir / "stdout").read_bytes() if (run_dir / "stdout").exists() else b""
    stdout_text = stdout.decode("utf-8", errors="replace")
    lines = stdout_text.splitlines()
    # A running attempt's last line may be half written: the live stream starts after the last
    # newline, so nothing is shown twice.
    complete = stdout.rfind(b"\n") + 1
    if record.ended_at is None:
        lines = stdout[:complete].decode("utf-8", errors="replace").splitlines()
    verify = []
    k = 1
    while (run_dir / f"verify-{k}.stdout").exists() or (run_dir / f"verify-{k}.stderr").exists():
        verify.append(
            {
                "n": k,
                "stdout": _read(run_dir / f"verify-{k}.stdout"),
                "stderr": _read(run_dir / f"verify-{k}.stderr"),
            }
        )
        k += 1
    view.update(
        prompt=_read(run_dir / "prompt.md"),
        turns=[t.to_dict() for t in logs.parse_turns(lines)],
        stderr=_read(run_dir / "stderr"),
        verify=verify,
        result=logs.read_result(run_dir),
        offset=complete if record.ended_at is None else len(stdout),
    )
    return view


def _read(path: Path, limit: int = 200_000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit} more)"


def graph(store: SQLStore, task_id: str) -> dict[str, Any]:
    """The task's neighbourhood for the drawing: parent chain, blockers, dependents, children
    (with their own blockers and dependents one step further)."""
    task = store.get(task_id)
    rel = store.relations(task_id)
    nodes: dict[str, dict[str, Any]] = {task.id: _node(task)}
    edges: list[dict[str, str]] = []
    chain = []
    parent = task.parent
    while parent and len(chain) < 5:
        p = store.get(parent)
        nodes[p.id] = _node(p)
        chain.append(p.id)
        parent = p.parent
    for kind, items in rel.items():
        for item in items[:40]:
            if item["id"] not in nodes:
                nodes[item["id"]] = _node(store.get(item["id"]))
            if kind == "blocked_by":
                edges.append({"from": item["id"], "to": task.id, "kind": "blocks"})
            elif kind == "blocks":
                edges.append({"from": task.id, "to": item["id"], "kind": "blocks"})
            else:
                edges.append({"from": task.id, "to": item["id"], "kind": "parent"})
    return {
        "center": task.id,
        "ancestors": chain,
        "blockers": [i["id"] for i in rel["blocked_by"][:40]],
        "dependents": [i["id"] for i in rel["blocks"][:40]],
        "children": [i["id"] for i in rel["children"][:40]],
        "nodes": nodes,
        "edges": edges,
    }


def _node(task: Task) -> dict[str, Any]:
    return {"id": task.id, "title": task.title, "status": task.status}
