"""Task commands: add, list, show, update, done, retry, block, unblock, ready."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ralph import errors
from ralph.cli.common import (
    echo,
    emit_json,
    render_tasks,
    store,
    tasks_json,
)
from ralph.store import project_root

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Labels = Annotated[list[str] | None, typer.Option("--label", "-l", help="A label (repeatable).")]
Requires = Annotated[
    list[str] | None,
    typer.Option(
        "--requires", metavar="CAP", help="A capability a worker needs for it (repeatable)."
    ),
]
Limit = Annotated[int | None, typer.Option("--limit", "-n", min=0, help="Show at most N.")]

_TASK_N = re.compile(r"^task (\d+): ")


def add(
    title: Annotated[str | None, typer.Argument(help="What to do (omit with --from).")] = None,
    description: Annotated[
        str, typer.Option("--description", "-d", help="Details for the agent.")
    ] = "",
    priority: Annotated[
        int,
        typer.Option(
            "--priority",
            "-p",
            "--score",
            help="Higher runs first (the opposite of prd.json, where priority 1 runs first).",
        ),
    ] = 0,
    parent: Annotated[str | None, typer.Option(help="Parent task id.")] = None,
    blocked_by: Annotated[
        list[str] | None,
        typer.Option(
            "--blocked-by", "-b", metavar="ID", help="A task that must be done first (repeatable)."
        ),
    ] = None,
    requires: Requires = None,
    label: Labels = None,
    task_id: Annotated[str | None, typer.Option("--id", help="Choose the id yourself.")] = None,
    discovered_from: Annotated[
        str | None,
        typer.Option(
            "--discovered-from",
            metavar="ID",
            help="The task whose work found this one (an agent: $RALPH_TASK_ID); at most "
            "max_discovered (config, default 5) per task.",
        ),
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="FILE|-",
            help="Add every task of a JSONL file (or - for stdin) in one transaction.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a task, or many at once from JSONL.

    \b
    Examples:
      ralph add "Write the parser" -p 5 --label backend
      ralph add "Write the tests" --blocked-by rl-3k9x2a7b
      ralph add "Fix the flaky test" --discovered-from "$RALPH_TASK_ID"   # from an agent
      ralph list --json | jq -c '.[]' > tasks.jsonl; ralph --db other.db add --from tasks.jsonl
    """
    if from_file is not None:
        if title is not None:
            raise errors.UsageError("give either a TITLE or --from, not both")
        _add_from(from_file, as_json)
        return
    if title is None:
        raise errors.UsageError("missing TITLE", hint='ralph add "What to do"')
    relay = os.environ.get("RALPH_FOLLOWUPS")
    if relay and discovered_from:  # inside ralph's sandbox: ralph files it after the agent
        from ralph.sandbox import followups  # lazy: start-up (only for --discovered-from)

        spec = {"title": title, "description": description, "priority": priority,
                "parent": parent, "blocked_by": blocked_by or [], "requires": requires or [],
                "labels": label or [], "id": task_id}  # fmt: skip
        followups.queue(Path(relay), spec)
        echo(f"Queued {title!r}: ralph files it as a follow-up of {discovered_from} when you exit")
        return
    task = store(create=True).add(
        title,
        description=description,
        priority=priority,
        parent=parent,
        blocked_by=blocked_by or (),
        requires=requires or (),
        labels=label or (),
        id=task_id,
        discovered_from=discovered_from,
        max_discovered=_max_discovered() if discovered_from else None,
    )
    if as_json:
        emit_json(task.to_dict())
    else:
        echo(f"Created {task.id}: {task.title}")


def _max_discovered() -> int:
    """The per-task cap on follow-ups, from the config of the project we are in."""
    from ralph.config import load_settings  # lazy: start-up (config: only with --discovered-from)

    return load_settings(project_root()).max_discovered


def _add_from(source: str, as_json: bool) -> None:
    pairs = read_task_objects(source)
    try:
        tasks = store(create=True).add_many([obj for obj, _ in pairs])
    except errors.RalphError as exc:
        # The store numbers tasks from 1; point at the line of the file instead.
        match = _TASK_N.match(exc.message)
        if match:
            exc.message = f"{pairs[int(match.group(1)) - 1][1]}: " + exc.message[match.end() :]
        raise
    if as_json:
        emit_json(tasks_json(tasks))
    else:
        echo(f"Added {len(tasks)} task{'s' if len(tasks) != 1 else ''} from {source}")


def read_task_objects(source: str) -> list[tuple[dict[str, Any], str]]:
    """Task objects from a file or stdin (JSONL or one JSON array), each with where it stands."""
    from ralph.taskfile import task_objects  # lazy: start-up (only for --from)

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise errors.UsageError(f"cannot read {source}: {reason}") from exc
    return task_objects(text, source)


def list_(
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="open, done, failed or cancelled.")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", "-l", help="Only this label.")] = None,
    parent: Annotated[str | None, typer.Option(help="Only children of this task.")] = None,
    limit: Limit = None,
    tree: Annotated[
        bool, typer.Option("--tree", help="Nest by parent, with dependencies.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List tasks in the order they were added.

    \b
    Examples:
      ralph list --status open
      ralph list --tree
      ralph list --json | jq -r '.[] | select(.ready) | .id'
    """
    tasks = store().list(status=status, label=label, parent=parent, limit=limit or None)
    if tree:
        from ralph.cli.monitor import print_task_tree  # lazy: start-up (rich: only for list --tree)

        print_task_tree(tasks, as_json)
    elif as_json:
        emit_json(tasks_json(tasks))
    else:
        render_tasks(tasks)


def show(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: JsonFlag = False,
) -> None:
    """Show one task: its fields, blockers, dependents, children, readiness and live claim.

    \b
    Example:
      ralph show rl-3k9x2a7b
    """
    from ralph.ops import show as shown  # lazy: start-up (only for show)

    snapshot = os.environ.get(shown.SNAPSHOT_VAR)
    if snapshot:  # inside ralph's sandbox: the store is out of reach, the task was left here
        if task_id != os.environ.get("RALPH_TASK_ID"):
            raise errors.StoreError(
                f"inside ralph's sandbox only this attempt's task can be shown, not {task_id}",
                hint="ralph show $RALPH_TASK_ID",
            )
        sys.stdout.write(Path(snapshot, "show.json" if as_json else "show.txt").read_text())
        return
    doc, text = shown.describe(store(), task_id)
    if as_json:
        emit_json(doc)
    else:
        echo(text)


def update(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    status: Annotated[
        str | None, typer.Option("--status", "-s", help="open, done, failed or cancelled.")
    ] = None,
    title: Annotated[str | None, typer.Option("--title", "-t")] = None,
    priority: Annotated[int | None, typer.Option("--priority", "-p", "--score")] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    parent: Annotated[str | None, typer.Option(help="Move under this parent.")] = None,
    no_parent: Annotated[bool, typer.Option("--no-parent", help="Detach from its parent.")] = False,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Replace the labels (repeatable).")
    ] = None,
    requires: Annotated[
        list[str] | None,
        typer.Option(
            "--requires", metavar="CAP", help="Replace the required capabilities (repeatable)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a task's fields or status.

    \b
    Examples:
      ralph update rl-3k9x2a7b -p 9 --label urgent
      ralph update rl-3k9x2a7b --status cancelled
    """
    changes: dict[str, Any] = {}
    if parent is not None and no_parent:
        raise errors.UsageError("give either --parent or --no-parent, not both")
    if parent is not None or no_parent:
        changes["parent"] = parent
    task = store().update(
        task_id,
        status=status,
        title=title,
        priority=priority,
        description=description,
        labels=label or None,
        requires=requires or None,
        **changes,
    )
    if as_json:
        emit_json(task.to_dict())
    else:
        echo(f"Updated {task.id}: {task.title} [{task.status}]")


def done(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    token: Annotated[
        int | None,
        typer.Option(help="Fencing token of your claim: refuse if the claim is no longer yours."),
    ] = None,
    worker: Annotated[
        str | None, typer.Option(help="Refuse unless this worker holds the live claim.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Mark a task done (releasing its claim) and report what it unblocked.

    \b
    Example:
      ralph done rl-3k9x2a7b
      Done rl-3k9x2a7b: Write the parser
      Now unblocked: rl-8m2p0q4c
    """
    task, unblocked = store().done(task_id, token=token, worker=worker)
    if as_json:
        emit_json({**task.to_dict(), "unblocked": unblocked})
        return
    echo("\n".join([f"Done {task.id}: {task.title}", *(f"Now unblocked: {i}" for i in unblocked)]))


def retry(task_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False) -> None:
    """Put a failed task back in the queue; its earlier attempts stay counted.

    \b
    Example:
      ralph retry rl-3k9x2a7b
      Retrying rl-3k9x2a7b: Write the parser (2 attempts so far)
    """
    task = store().retry(task_id)
    if as_json:
        emit_json(task.to_dict())
        return
    echo(f"Retrying {task.id}: {task.title} ({task.attempts} attempts so far)")


def block(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    blocker: Annotated[str, typer.Argument(metavar="BLOCKER")],
) -> None:
    """Make a task wait until BLOCKER is done (cycles are refused).

    \b
    Example:
      ralph block rl-tests rl-parser     # the tests wait for the parser
    """
    task = store().block(task_id, blocker)
    echo(f"{task.id} now waits on {blocker} (blocked by: {', '.join(task.blocked_by)})")


def unblock(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    blocker: Annotated[str, typer.Argument(metavar="BLOCKER")],
) -> None:
    """Remove the dependency of a task on BLOCKER.

    \b
    Example:
      ralph unblock rl-tests rl-parser
    """
    task = store().unblock(task_id, blocker)
    echo(f"{task.id} no longer waits on {blocker}")


def ready(
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="Show at most N (0: all).")
    ] = 10,
    capability: Annotated[
        list[str] | None,
        typer.Option(
            "--capability",
            "-c",
            metavar="CAP",
            help="Only tasks whose requirements these capabilities meet (repeatable).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Tasks a worker could claim now, best first (priority, then age).

    \b
    Examples:
      ralph ready
      TASK=$(ralph ready --json --limit 1 | jq -r '.[0].id')   # "null" when none
    """
    tasks = store().ready(limit=limit or None, capabilities=capability or None)
    if as_json:
        emit_json(tasks_json(tasks))
    else:
        render_tasks(tasks, empty="No ready tasks")


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command()(add)
    app.command("list")(list_)
    app.command()(show)
    app.command()(update)
    app.command()(done)
    app.command()(retry)
    app.command()(block)
    app.command()(unblock)
    app.command()(ready)
