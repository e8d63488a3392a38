"""`ralph review`, `ralph approve` and `ralph reject`: the queue of task commits waiting for a
person (`[land] mode = "review"`), and the decisions on them (ralph/review/desk.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ralph.cli.common import echo, emit_json, store

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
ByOpt = Annotated[
    str | None,
    typer.Option("--by", metavar="WHO", help="Who decides, for the event. [default: $USER@host]"),
]


def desk(config: Path | None = None) -> Any:
    """A ReviewDesk on the session's store and the current repository, with the config's
    verify commands and merge lock timeout."""
    from ralph.config import load_settings
    from ralph.review.desk import ReviewDesk
    from ralph.store import project_root
    from ralph.workspace.git import repo_root

    root = repo_root(Path.cwd())
    settings = load_settings(project_root(root), config)
    return ReviewDesk(
        store(),
        root,
        verify=settings.verify,
        lock_timeout=settings.merge_lock_timeout,
        verify_timeout=settings.task_timeout,
    )


def review(as_json: JsonOpt = False) -> None:
    """Tasks whose commit waits for review: task, title, diff stat, cost, age, verify result.

    \b
    Example:
      ralph run --land review --agent claude
      ralph review
      ralph approve rl-abc12345
      ralph reject rl-def67890 --note "keep the old API; add a flag instead"
    """
    from ralph.durations import format_duration

    items = desk().queue()
    if as_json:
        emit_json(items)
        return
    if not items:
        echo("No tasks waiting for review")
        return
    echo(f"{len(items)} task(s) waiting for review:")
    for item in items:
        cost = "cost unknown" if item["cost_usd"] is None else f"${item['cost_usd']:.4f}"
        verify = (item.get("verify") or {}).get("result", "none")
        age = format_duration(item["age_s"] or 0)
        echo(
            f"  {item['task_id']}  {item['title']}\n"
            f"      {item['diffstat'] or 'no changes'}; {cost}; waiting {age}; "
            f"verify: {verify}; branch {item['branch'].removeprefix('refs/heads/')}"
        )


def approve(
    ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Tasks to land.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Land reviewed task commits on their target, exactly once each; dependents become ready.

    A target that moved since is merged and verified again (the config's `verify`); a conflict
    or a failed verify sends the task back to the queue with a note.

    \b
    Example:
      ralph approve rl-abc12345 rl-def67890 --by alice
    """
    d, done = desk(), []
    try:
        for task_id in ids:
            decision = d.approve(task_id, by=by)
            done.append(decision)
            if not as_json:
                echo(_said(decision))
    finally:
        if as_json:
            emit_json([x.to_dict() for x in done])


def reject(
    task_id: Annotated[str, typer.Argument(metavar="ID", help="The task to send back.")],
    note: Annotated[
        str,
        typer.Option("--note", metavar="TEXT", help="What to change: the next prompt has it."),
    ],
    by: ByOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send a task back to the queue with a note for its next attempt; its commit is kept
    under refs/ralph/attempts/<id>/review-<n>.

    \b
    Example:
      ralph reject rl-abc12345 --note "use the existing parser, not a new one"
    """
    decision = desk().reject(task_id, note, by=by)
    if as_json:
        emit_json(decision.to_dict())
    else:
        echo(_said(decision))


def _said(d: Any) -> str:
    if d.status in ("landed", "already"):
        how = "landed" if d.status == "landed" else "had already landed"
        line = f"{d.task}: {how} as {d.commit[:10]}"
        return line + (f"\nNow unblocked: {', '.join(d.unblocked)}" if d.unblocked else "")
    if d.status == "empty":
        return f"{d.task}: done ({d.note})"
    what = "rejected" if d.status == "rejected" else "sent back"
    return f"{d.task}: {what}; commit kept as {d.kept}\n  {d.note}"


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command("review")(review)
    app.command("approve")(approve)
    app.command("reject")(reject)
