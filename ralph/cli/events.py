"""`ralph events`: the append-only audit log (created, claimed, renewed, released, done, ...)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ralph.cli.common import echo, emit_json, store
from ralph.models import iso


def events(
    task: Annotated[
        str | None, typer.Option("--task", metavar="ID", help="Only this task's events.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. claimed or done.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Only the last N.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """The audit log, oldest first.

    \b
    Examples:
      ralph events --task rl-3k9x2a7b
      ralph events --kind done --json | jq length
    """
    found = store().events(task_id=task, kind=kind)
    if limit is not None:
        found = found[-limit:]
    if as_json:
        emit_json([e.to_dict() for e in found])
        return
    if not found:
        echo("No events")
        return
    lines = []
    for e in found:
        parts = [iso(e.at), f"{e.kind:<9}", e.task_id or "-", e.worker or "-"]
        if e.token is not None:
            parts.append(f"token={e.token}")
        if e.data:
            parts.append(json.dumps(e.data, separators=(",", ":")))
        lines.append("  ".join(p for p in parts if p))
    echo("\n".join(lines))


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command()(events)
