"""`ralph show`: one task with its relations, claim, attempts and cost, as text or JSON.

The worker also writes both forms into a sandboxed attempt's own folder, where `ralph show
$RALPH_TASK_ID` reads them (`SNAPSHOT_VAR`): the store itself is out of the agent's reach.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ralph.cli.common import claim_line, task_flags
from ralph.models import iso
from ralph.ops.stats import cost_of, cost_text

SNAPSHOT_VAR = "RALPH_TASK_SNAPSHOT"  # a folder holding show.txt and show.json


def sandbox_of(attempts: list[Any]) -> str | None:
    """The policy the last attempt ran under, from its result.json ("sandbox: bwrap, ..." or
    "unsandboxed"); None before any attempt ended."""
    for attempt in reversed(attempts):
        try:
            data = json.loads((Path(attempt.run_dir or "") / "result.json").read_text())
        except (OSError, ValueError):
            continue
        return str(data.get("sandbox") or "unsandboxed")
    return None


def describe(store: Any, task_id: str) -> tuple[dict[str, Any], str]:
    """(the `show --json` document, the text `show` prints) of one task."""

    task = store.get(task_id)
    relations = store.relations(task_id)
    claim = store.active_claim(task_id)
    ran = store.attempts(task_id)
    spent = cost_of(ran)
    sandbox = sandbox_of(ran)
    resolutions = sum(1 for a in ran if a.kind == "resolve")
    launches = f"{len(ran)} agent launches" + (
        f", {resolutions} conflict resolution{'s' * (resolutions != 1)}" if resolutions else ""
    )
    doc = {
        **task.to_dict(),
        "launches": len(ran),  # every agent run; "attempts" counts the counted ones
        "resolutions": resolutions,  # launches of kind "resolve" (ralph/resolve.py)
        **spent,
        **{f"{k}_status": v for k, v in relations.items()},
        "claim": claim.to_dict() if claim else None,
        "sandbox": sandbox,
        "runs": [  # every launch, with the agent that ran it (fallback agents: which one)
            {
                "attempt": a.attempt,
                "agent": a.agent,
                "worker": a.worker,
                "outcome": a.outcome,
                "counted": a.counted,
                "started_at": iso(a.started_at),
            }
            for a in ran
        ],  # fmt: skip
    }
    now = time.time()
    status = task.status
    if status == "open":
        status = f"{status} ({task_flags(task, now) or 'not ready'})"
    rows = [
        ("status", status),
        ("priority", str(task.priority)),
        ("parent", task.parent or ""),
        ("found in", task.discovered_from or ""),
        ("labels", ", ".join(task.labels)),
        ("requires", ", ".join(task.requires)),
        ("attempts", f"{task.attempts} ({launches})" if ran else ""),
        ("cost", cost_text(spent["cost_usd"], spent["unknown_cost"]) if ran else ""),
        ("launches", ", ".join(f"{a.agent} ({a.outcome or 'running'})" for a in ran)),
        ("last error" if task.status != "done" else "earlier error", task.last_error or ""),
        ("sandbox", (sandbox or "").removeprefix("sandbox: ")),
        ("blocked by", _with_status(relations["blocked_by"])),
        ("blocks", _with_status(relations["blocks"])),
        ("children", _with_status(relations["children"])),
        ("claim", claim_line(claim, now) if claim else ""),
        ("created", iso(task.created_at) or ""),
        ("done", iso(task.done_at) or ""),
    ]
    lines = [f"{task.id}: {task.title}"]
    lines += [f"  {name + ':':<12}{value}" for name, value in rows if value]
    if task.description:
        lines += ["", *("  " + line for line in task.description.splitlines())]
    return doc, "\n".join(lines)


def write_snapshot(store: Any, task_id: str, folder: Path) -> None:
    """Leave `show`'s two forms of the task in `folder` for a sandboxed agent."""
    doc, text = describe(store, task_id)
    (folder / "show.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    (folder / "show.txt").write_text(text + "\n")


def _with_status(items: list[dict[str, str]]) -> str:
    return ", ".join(f"{i['id']} ({i['status']})" for i in items)
