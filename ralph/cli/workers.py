"""Worker commands: `worker list`, `worker stop`, and `pause`/`resume` of every worker on every
host (`worker start` belongs to the loop)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ralph.cli.common import echo, emit_json, store
from ralph.durations import parse_duration


def list_workers(
    show_all: Annotated[
        bool, typer.Option("--all", help="Include stopped and dead workers.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Registered workers and what they are doing.

    \b
    Example:
      ralph worker list
      Workers:
        worker-abc123 [idle] implementer-1
        worker-def456 [busy] implementer-2 → rl-task001
    """
    now = time.time()
    workers = [w for w in store().workers() if show_all or w.state(now) not in ("stopped", "dead")]
    if as_json:
        emit_json([w.to_dict(now) for w in workers])
        return
    lines = ["Workers:"]
    for w in workers:
        state = w.state(now)
        task = f" → {w.current_task}" if state == "busy" and w.current_task else ""
        lines.append(f"  {w.id} [{state}] {w.name}{task}")
    if not workers:
        lines.append("  (none)" if show_all else "  (none running; --all shows stopped ones)")
    echo("\n".join(lines))


def stop(name: Annotated[str, typer.Argument(metavar="NAME", help="Worker name or id.")]) -> None:
    """Ask a worker to stop after its current task (it sees this at its next heartbeat).

    \b
    Example:
      ralph worker stop implementer-1
    """
    worker = store().stop_worker(name)
    echo(f"Asked {worker.name} ({worker.id}) to stop")


def pause(
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Shown to the workers and in events.")
    ] = "paused by hand",
    for_: Annotated[
        str | None,
        typer.Option("--for", metavar="DURATION", help="Resume by itself after this long."),
    ] = None,
) -> None:
    """Take no new task on any worker of any host (running agents finish) until `ralph resume`.

    \b
    Example:
      ralph pause --reason "deploying" --for 30m
    """

    until = time.time() + parse_duration(for_, what="--for") if for_ else None
    store().pause(reason, until=until, by="cli")
    echo(f"Paused every worker: {reason}" + (f" (for {for_})" if for_ else ""))


def resume() -> None:
    """Let every worker take tasks again after `ralph pause` (or the web page's pause).

    \b
    Example:
      ralph resume
    """
    echo("Resumed every worker" if store().resume(by="cli") else "Nothing was paused")


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    worker_app.command("list")(list_workers)
    worker_app.command()(stop)
    app.command()(pause)
    app.command()(resume)
