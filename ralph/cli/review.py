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
        pull_requests=settings.land.pr,
    )


def review(
    as_json: JsonOpt = False,
    sync: Annotated[
        bool,
        typer.Option(
            "--sync",
            help="Pull request mode: carry out GitHub's decisions on the tasks' pull requests "
            '(merged: done; closed: back to the queue); with [land] mode = "pr" in the config, '
            "also open the missing ones.",
        ),
    ] = False,
    remote: Annotated[
        str | None,
        typer.Option("--remote", metavar="NAME", help="The remote with --sync. [default: config]"),
    ] = None,
) -> None:
    """Tasks whose commit waits for review: task, title, diff stat, cost, age, verify result.

    \b
    Example:
      ralph run --land review --agent claude
      ralph review
      ralph approve rl-abc12345
      ralph reject rl-def67890 --note "keep the old API; add a flag instead"
      ralph review --sync --remote origin     # pull request mode
    """
    from ralph.durations import format_duration

    if sync:
        _sync(remote, as_json)
        return
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
        pr = f"; pull request #{item['pr_number']} {item['pr_url']}" if item["pr_number"] else ""
        echo(
            f"  {item['task_id']}  {item['title']}\n"
            f"      {item['diffstat'] or 'no changes'}; {cost}; waiting {age}; "
            f"verify: {verify}; branch {item['branch'].removeprefix('refs/heads/')}{pr}"
        )


def _sync(remote: str | None, as_json: bool) -> None:
    """`ralph review --sync`: one PullRequests.sync; a task that failed is exit 16."""
    from ralph.config import load_settings
    from ralph.errors import GitHubError, UsageError
    from ralph.review.pulls import PullRequests, github_repo
    from ralph.store import project_root
    from ralph.workspace.git import repo_root

    root = repo_root(Path.cwd())
    settings = load_settings(project_root(root), None)
    remote = remote or settings.remote
    if not remote:
        raise UsageError("--sync needs the remote the pull requests' branches are on",
                         hint="add --remote origin")  # fmt: skip
    repo = github_repo(root, remote, settings.land.repo)
    tasks = store()
    pulls = PullRequests(tasks, root, remote=remote, repo=repo, log=lambda line: None)
    report = pulls.sync(publish=settings.land.pr)
    if report.landed:  # the source issues of merged tasks imported from GitHub
        from ralph.ops.github_issues import sync_landed

        sync_landed(tasks, close=bool(settings.github.get("close_issues")))
    if as_json:
        emit_json(report.to_dict())
    else:
        for item in report.opened:
            echo(f"{item['task']}: pull request #{item['number']} {item['url']}")
        for item in report.landed:
            line = f"{item['task']}: #{item['number']} merged as {item['commit'][:10]}; done"
            echo(
                line
                + (f"\nNow unblocked: {', '.join(item['unblocked'])}" if item["unblocked"] else "")
            )
        for item in report.returned:
            echo(f"{item['task']}: #{item['number']} closed; back to the queue\n  {item['note']}")
        for item in report.waiting:
            echo(f"{item['task']}: #{item['number']} still open")
        if not report.tried:
            echo("No tasks waiting for review")
    if report.failed:
        first = report.failed[0]
        hint = f"{len(report.failed)} task(s) not synced; run it again later"
        raise GitHubError(f"{first['task']}: {first['error']}", hint=hint)


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
