"""Claim commands: claim, claim:release, claim:renew, claim:expired, claim:expire, claim:show,
claim:release-worker (each also spelled with a space: `ralph claim release ...`)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ralph.cli.common import claim_line, echo, emit_json, store
from ralph.durations import format_duration, parse_duration
from ralph.models import iso

TaskId = Annotated[str, typer.Argument(metavar="ID", help="The task.")]
WorkerName = Annotated[str, typer.Argument(metavar="WORKER", help="The worker's name.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Token = Annotated[
    int | None,
    typer.Option(help="Fencing token of your claim: refuse if the live claim has another."),
]


def claim(
    task_id: TaskId,
    worker: WorkerName,
    lease: Annotated[
        str,
        typer.Option(
            "--lease",
            metavar="DURATION",
            help="How long the claim lasts unless renewed: minutes, or 90s, 30m, 2h.",
        ),
    ] = "30m",
    as_json: JsonFlag = False,
) -> None:
    """Claim a task for WORKER; fails (exit 4) when another worker holds it.

    Also: `ralph claim release|renew|show|expired|expire|release-worker ...`.

    \b
    Examples:
      ralph claim rl-3k9x2a7b worker-1 --lease 45m && echo "mine"
      ralph claim release rl-3k9x2a7b worker-1
    """
    got = store().claim(task_id, worker, parse_duration(lease, what="lease"))
    if as_json:
        emit_json(got.to_dict())
    else:
        echo(f"Claimed {got.task_id} for {claim_line(got)}")


def release(task_id: TaskId, worker: WorkerName, token: Token = None) -> None:
    """Give a claimed task back to the queue (holder only).

    \b
    Example:
      ralph claim:release rl-3k9x2a7b worker-1
    """
    store().release(task_id, worker, token)
    echo(f"Released {task_id} ({worker})")


def renew(
    task_id: TaskId, worker: WorkerName, token: Token = None, as_json: JsonFlag = False
) -> None:
    """Extend the holder's claim by its own lease length from now.

    \b
    Example:
      ralph claim:renew rl-3k9x2a7b worker-1
      Renewed rl-3k9x2a7b for worker-1 until 2026-11-02T10:41:07.120Z (renewal 3)
    """
    got = store().renew(task_id, worker, token)
    if as_json:
        emit_json(got.to_dict())
    else:
        echo(
            f"Renewed {got.task_id} for {got.worker} until {iso(got.expires_at)} "
            f"(renewal {got.renewals})"
        )


def expired(as_json: JsonFlag = False) -> None:
    """Claims whose lease ran out and that nobody has expired yet (crashed workers).

    \b
    Example:
      ralph claim:expired --json
    """
    claims = store().expired()
    if as_json:
        emit_json([c.to_dict() for c in claims])
        return
    if not claims:
        echo("No expired claims")
        return
    now = time.time()
    echo(
        "\n".join(
            f"claim {c.token}: {c.task_id} held by {c.worker}, expired "
            f"{format_duration(now - c.expires_at)} ago"
            for c in claims
        )
    )


def expire(
    claim_id: Annotated[
        int | None,
        typer.Argument(
            metavar="[CLAIM_ID]",
            help="One claim (see claim:expired); omit for every stale one.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Expire stale claims so their tasks become ready again.

    \b
    Examples:
      ralph claim:expire          # every claim whose lease ran out
      ralph claim:expire 42       # just claim 42
    """
    s = store()
    gone = [s.expire(claim_id)] if claim_id is not None else s.expire_stale()
    if not gone:
        echo("No stale claims")
    for c in gone:
        echo(f"Expired claim {c.token} on {c.task_id} (worker {c.worker})")


def show(task_id: TaskId, as_json: JsonFlag = False) -> None:
    """The task's live claim: holder, token and lease end.

    \b
    Example:
      ralph claim:show rl-3k9x2a7b
    """
    got = store().active_claim(task_id)
    if as_json:
        emit_json(got.to_dict() if got else None)
    elif got is None:
        echo(f"{task_id} has no live claim")
    else:
        echo(f"{got.task_id} claimed by {claim_line(got)}, renewed {got.renewals} times")


def release_worker(worker: WorkerName) -> None:
    """Release every live claim of a worker (after it crashed).

    \b
    Example:
      ralph claim:release-worker worker-3
    """
    released = store().release_worker(worker)
    if not released:
        echo(f"{worker} holds no claims")
    for c in released:
        echo(f"Released {c.task_id} (claim {c.token})")


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command()(claim)
    app.command("claim:release")(release)
    app.command("claim:renew")(renew)
    app.command("claim:expired")(expired)
    app.command("claim:expire")(expire)
    app.command("claim:show")(show)
    app.command("claim:release-worker")(release_worker)
