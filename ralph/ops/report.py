"""`ralph report`: what a night of agents did, for a person with coffee.

One dict (`build_report`) read from the store's attempts and tasks, rendered as text, Markdown,
JSON or one self-contained HTML page (ralph.ops.report_html). Its counts use the same helpers
as `ralph stats` and `ralph status` (ralph.ops.stats): "attempts" are the counted ones,
"launches" every agent run, and an unknown cost stays unknown.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ralph import errors
from ralph.durations import parse_duration
from ralph.models import Attempt, Task, from_iso, iso
from ralph.ops.report_html import _dur, headline, render_html
from ralph.ops.stats import cost_of, cost_text, counts_of, model_of
from ralph.store.base import SQLStore

FORMATS = ("text", "md", "html", "json")
SUCCESS = ("success", "no_changes", "reconciled")
# why a launch was wasted, by its outcome
WASTE = {
    "merge_conflict": "conflict",
    "target_moved": "conflict",
    "rate_limited": "rate limit",
    "network_down": "network",
    "auth_failed": "auth",
    "timeout": "timeout",
    "idle_timeout": "timeout",
    "crashed": "crash",
    "agent_error": "agent error",
    "internal_error": "crash",
    "lease_lost": "lease lost",
    "interrupted": "interrupted",
    "verify_failed": "verify failed",
    "push_failed": "push failed",
    "no_changes_failed": "no changes",
    "markers_left": "conflict",  # a resolution that left conflict markers (ralph/resolve.py)
}
SLOWEST = 5


def _duration(a: Attempt, now: float) -> float:
    return (a.ended_at or now) - a.started_at


def build_report(
    store: SQLStore, *, since: float | None = None, now: float | None = None, run: str | None = None
) -> dict:
    """Everything the report shows, for attempts started at or after `since` (all when None),
    or those of one run (`run`: its id or `last`, from the run_started/run_ended events)."""
    now = time.time() if now is None else now
    until, workers, run_id = None, None, None
    if run is not None:
        since, until, workers = run_window(store, run)
        run_id = run
    ran = [
        a
        for a in store.attempts()
        if (since is None or a.started_at >= since)
        and (until is None or a.started_at <= until)
        and (not workers or a.worker in workers)
    ]
    tasks = {t.id: t for t in store.get_many_known(sorted({a.task_id for a in ran}))}
    by_task: dict[str, list[Attempt]] = defaultdict(list)
    for a in ran:
        by_task[a.task_id].append(a)

    def row(task: Task) -> dict[str, Any]:
        mine = by_task[task.id]
        last = max(mine, key=lambda a: a.id)
        return {
            "id": task.id,
            "title": task.title,
            "status": task.status,
            "commit": task.commit_sha,
            "duration_s": round(sum(_duration(a, now) for a in mine), 3),
            "attempts": task.attempts,
            "launches": len(mine),
            "resolutions": sum(1 for a in mine if a.kind == "resolve"),
            **cost_of(mine),
            "last_error": task.last_error if task.status != "done" else None,
            "patch": _patch(last),
            "agent": last.agent,
        }

    rows = [row(tasks[t]) for t in sorted(by_task) if t in tasks]
    landed = sorted(
        (r for r in rows if r["status"] == "done"),
        key=lambda r: (tasks[r["id"]].done_at or 0, r["id"]),
    )
    failed = [r for r in rows if r["status"] == "failed"]
    retrying = [r for r in rows if r["status"] == "open"]
    wasted = Counter(WASTE.get(a.outcome or "", "other") for a in ran if _wasted(a))
    agents: dict[str, list[Attempt]] = defaultdict(list)
    models: dict[tuple[str, str], list[Attempt]] = defaultdict(list)
    for a in ran:
        agents[a.agent].append(a)
        models[a.agent, model_of(a)].append(a)
    busy = sum(_duration(a, now) for a in ran)
    start = min((a.started_at for a in ran), default=None)
    end = max((a.ended_at or now for a in ran), default=None)
    wall = (end - start) if start is not None and end is not None else 0.0
    return {
        "run": run_id,
        "since": iso(since),
        "until": iso(until or now),
        "first_launch": iso(start),
        "last_end": iso(end),
        "tasks": {
            "landed": len(landed),
            "failed": len(failed),
            "retrying": len(retrying),
        },
        **counts_of(ran),
        "resolutions": sum(1 for a in ran if a.kind == "resolve"),  # conflicts an agent resolved
        "running": sum(1 for a in ran if a.ended_at is None),
        "wasted": sum(wasted.values()),
        "wasted_by_reason": dict(sorted(wasted.items())),
        **cost_of(ran),
        "cost_by_agent": [
            {"agent": name, **counts_of(items), **cost_of(items)}
            for name, items in sorted(agents.items())
        ],
        "cost_by_model": [
            {"agent": agent, "model": model, **counts_of(items), **cost_of(items)}
            for (agent, model), items in sorted(models.items())
        ],
        "agent_s": round(busy, 3),
        "wall_s": round(wall, 3),
        "parallelism": round(busy / wall, 2) if wall > 0 else None,
        "landed": landed,
        "failed": failed,
        "retrying": retrying,
        "slowest": sorted(rows, key=lambda r: -r["duration_s"])[:SLOWEST],
        "lanes": _lanes(ran, now),
        "landed_per_hour": _per_hour([tasks[r["id"]].done_at for r in landed]),
        "cost_over_time": _cost_curve(ran),
        "agent_switches": _switches(store, since, until or now),
    }


def _switches(store: SQLStore, since: float | None, until: float) -> list[dict[str, Any]]:
    """The fallback agents' moves in the window (ralph.fallback): from, to, why, until when."""
    return [
        {"at": iso(e.at), "from": e.data.get("from"), "to": e.data.get("to"),
         "reason": e.data.get("reason"), "until": iso(e.data.get("until")),
         "why": e.data.get("why")}
        for e in store.events(kind="agent_switched")
        if (since is None or e.at >= since) and e.at <= until
    ]  # fmt: skip


def _wasted(a: Attempt) -> bool:
    return a.ended_at is not None and a.outcome not in SUCCESS


def _patch(a: Attempt) -> str | None:
    """Where a failed attempt's work was kept (workspace.discard writes changes.patch)."""
    if a.run_dir and (Path(a.run_dir) / "changes.patch").is_file():
        return str(Path(a.run_dir) / "changes.patch")
    return None


def _lanes(ran: list[Attempt], now: float) -> list[dict[str, Any]]:
    lanes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in sorted(ran, key=lambda a: a.started_at):
        lanes[a.worker].append(
            {
                "task": a.task_id,
                "start": a.started_at,
                "end": a.ended_at or now,
                "outcome": a.outcome or "running",
            }
        )
    return [{"worker": w, "spans": spans} for w, spans in sorted(lanes.items())]


def _per_hour(times: list[float | None]) -> list[dict[str, Any]]:
    hours = Counter(int(t // 3600 * 3600) for t in times if t is not None)
    if not hours:
        return []
    first, last = min(hours), max(hours)
    return [
        {"hour": iso(h), "ts": h, "landed": hours.get(h, 0)} for h in range(first, last + 1, 3600)
    ]


def _cost_curve(ran: list[Attempt]) -> list[dict[str, Any]]:
    total, points = 0.0, []
    for a in sorted((a for a in ran if a.ended_at and a.cost_usd is not None), key=_end):
        total += a.cost_usd or 0.0
        points.append({"ts": a.ended_at, "cost_usd": round(total, 6)})
    return points


def _end(a: Attempt) -> float:
    return a.ended_at or 0.0


# -- rendering -----------------------------------------------------------------------------


def render(report: dict[str, Any], fmt: str) -> str:
    """The report in `fmt` (text, md, html, json)."""
    if fmt not in FORMATS:
        raise errors.UsageError(f"unknown report format {fmt!r}", hint="use " + ", ".join(FORMATS))
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "html":
        return render_html(report)
    return _prose(report, md=fmt == "md")


def _cost(item: dict[str, Any]) -> str:
    return cost_text(item["cost_usd"], item["unknown_cost"])


def _prose(r: dict[str, Any], *, md: bool) -> str:
    window = f"since {r['since']}" if r["since"] else "all attempts"
    if r.get("run"):
        window = f"run {r['run']}, {r['since']}"
    out: list[str] = [f"# ralph report ({window}, until {r['until']})" if md else (
        f"ralph report ({window}, until {r['until']})")]  # fmt: skip
    out.append("")
    for label, value in headline(r):
        out.append(f"- **{label}:** {value}" if md else f"  {label + ':':<24}{value}")

    def section(title: str, header: list[str], rows: list[list[str]]) -> None:
        if not rows:
            return
        out.extend(["", f"## {title}" if md else title])
        if md:
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
        else:
            widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
            widths[-1] = 0
            out.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
            out.extend(
                "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                for row in rows
            )

    def task_row(t: dict[str, Any]) -> list[str]:
        return [
            (t["commit"] or "-")[:10],
            t["id"],
            _dur(t["duration_s"]),
            f"{t['attempts']}/{t['launches']}",
            cost_text(t["cost_usd"], t["unknown_cost"]),
            t["agent"] or "-",  # the last launch's (fallback agents: which one landed it)
            t["title"][:60],
        ]

    head = ["Commit", "Task", "Time", "Att/Launch", "Cost", "Agent", "Title"]
    section("Landed", head, [task_row(t) for t in r["landed"]])
    for title, items in (("Failed", r["failed"]), ("Still retrying", r["retrying"])):
        section(
            title,
            ["Task", "Att/Launch", "Patch", "Last error"],
            [
                [
                    t["id"],
                    f"{t['attempts']}/{t['launches']}",
                    t["patch"] or "-",
                    (t["last_error"] or "-").splitlines()[0][:100],
                ]
                for t in items
            ],
        )
    section(
        "Cost by agent and model",
        ["Agent", "Model", "Attempts", "Launches", "Cost"],
        [
            [a["agent"], a["model"], str(a["attempts"]), str(a["launches"]), _cost(a)]
            for a in r["cost_by_model"]
        ],
    )
    section(
        "Agent switches",
        ["At", "From", "To", "Reason", "Until"],
        [
            [
                s["at"] or "-",
                s["from"] or "-",
                s["to"] or "-",
                s["reason"] or "-",
                s["until"] or "-",
            ]
            for s in r.get("agent_switches", [])
        ],
    )
    section("Slowest tasks", head, [task_row(t) for t in r["slowest"]])
    return "\n".join(out) + "\n"


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """`--since 12h` (a duration back from now) or an ISO time."""
    if value is None:
        return None

    now = time.time() if now is None else now
    try:
        return now - parse_duration(value, what="--since")
    except errors.UsageError:
        try:
            found = from_iso(value)
        except (ValueError, TypeError):
            found = None
        if found is None:
            raise errors.UsageError(
                f"invalid --since {value!r}", hint="a duration such as 12h, or an ISO time"
            ) from None
        return found


def run_ended(store: SQLStore, control: Any, names: list[str], summary: Any) -> str:
    """Write the `run_ended` event (the run's id, start, workers and summary counts) that
    `ralph report --run` reads; returns the run's id. Never fails the run."""

    run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(control.started_at))
    run_id = f"{run_id}-{os.getpid()}"
    try:
        data = {k: v for k, v in summary.to_dict().items() if k != "tasks"}
        store.note_event(
            "run_ended",
            run=run_id,
            started_at=control.started_at,
            workers=list(names),
            host=os.uname().nodename,
            **data,
        )
    except Exception as exc:  # the store may be what ended the run
        control.log(f"could not record the run's end: {exc}")
    return run_id


def run_window(store: SQLStore, run: str) -> tuple[float, float, list[str]]:
    """(start, end, worker names) of run `run` (its id, or `last`), from its run_ended event."""
    found = [e for e in store.events(kind="run_ended") if run in ("last", e.data.get("run"))]
    if not found:
        raise errors.NotFoundError(
            f"no run {run!r}", hint="`ralph events --kind run_ended` lists the runs that ended"
        )
    event = found[-1]
    return float(event.data["started_at"]), event.at, list(event.data.get("workers") or [])


def write_run_report(store: SQLStore, root: Path, control: Any, run_id: str) -> str | None:
    """`[report] write = true`: the run's HTML report into .ralph/reports/; its path, or None
    (a report that cannot be written must not fail the run)."""
    try:
        folder = root / ".ralph" / "reports"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(control.started_at))
        path = folder / f"run-{stamp}.html"
        report = build_report(store, run=run_id)
        path.write_text(render(report, "html"), encoding="utf-8")
        control.log(f"report: {path}")
        return str(path)
    except Exception as exc:
        control.log(f"could not write the run's report: {exc}")
        return None
