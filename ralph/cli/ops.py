"""Setting up and moving plans: `ralph init`, `ralph import`, `ralph export`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ralph import errors
from ralph.cli.common import echo, emit_json, session, store
from ralph.store import project_root

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def console():  # type: ignore[no-untyped-def]
    """A rich console for stdout (rich honours NO_COLOR and plain output to pipes)."""
    from rich.console import Console  # lazy: start-up

    return Console(highlight=False)


def init(as_json: JsonFlag = False) -> None:
    """Set up ralph in this project: .ralph/, ralph.toml, prompts/task.md.j2, the task store.

    Never overwrites a file; running it again changes nothing. A CLAUDE.md or AGENTS.md gets a
    short "Working under ralph" section, once.

    \b
    Example:
      ralph init && git add ralph.toml prompts && git commit -am "Set up ralph"
    """
    from ralph.ops.init import init_project  # lazy: start-up

    report = init_project(project_root(), db=session.db)
    if as_json:
        emit_json(report.to_dict())
        return
    lines = [f"ralph initialised in {report.root}"]
    lines += [f"  created   {p}" for p in report.created]
    what = dict.fromkeys((".gitignore", ".git/info/exclude"), "a line for ralph.local.toml")
    section = "a 'Working under ralph' section"
    lines += [f"  appended  {p} ({what.get(p, section)})" for p in report.appended]
    lines += [f"  kept      {p}" for p in report.kept]
    lines += [f"  note: {n}" for n in report.notes]
    if report.created or report.appended:
        lines += [
            "Next: review ralph.toml, commit it with prompts/ (keys and passwords go in your",
            "  environment or in ralph.local.toml, which git ignores; never in ralph.toml), then",
            '  ralph import prd.json --apply   (or ralph add "...")',
            "  ralph run",
        ]
    echo("\n".join(lines))


def import_(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE|-|github:OWNER/REPO",
            help="prd.json, Markdown or JSONL; - reads stdin; github:OWNER/REPO reads its "
            "issues through the gh CLI.",
        ),
    ],
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the tasks (default: only show them).")
    ] = False,
    fmt: Annotated[
        str | None,
        typer.Option("--format", metavar="prd|md|jsonl", help="[default: from the file]"),
    ] = None,
    chain: Annotated[
        bool,
        typer.Option(
            "--chain",
            help="Make each item wait for the one before it (Markdown: within a list; "
            "prd.json: in priority order).",
        ),
    ] = False,
    label: Annotated[
        str | None,
        typer.Option("--label", help="github: only issues with this label (e.g. ralph)."),
    ] = None,
    state: Annotated[
        str, typer.Option("--state", metavar="open|closed|all", help="github: which issues.")
    ] = "open",
    prefix: Annotated[
        str, typer.Option("--prefix", help="github: task ids are PREFIX-<issue number>.")
    ] = "gh",
    as_json: JsonFlag = False,
) -> None:
    """Import tasks from a prd.json, a Markdown checklist, JSONL or GitHub issues; a dry run
    unless --apply.

    prd.json: userStories[] (passes: true is done). Priority runs opposite ways: in prd.json a
    LOWER number runs first, in ralph a HIGHER priority runs first; the import converts (PRD
    priority 1 of 5 becomes ralph priority 5). --apply also sets `prd = "<file>"` in ralph.toml,
    so each story's passes becomes true in the commit of its task. Markdown: `- [ ]` items,
    `- [x]` done, nested items become children. JSONL: what `ralph export` writes. Ids come
    from the source, so importing again adds nothing twice. GitHub: issue #12 becomes task
    gh-12 (title, body, labels; a `needs:X` label requires capability X; "blocked by #N" and
    task-list items `- [ ] #N` become dependencies); importing again updates open tasks.

    \b
    Examples:
      ralph import prd.json                  # preview
      ralph import prd.json --apply
      ralph import TODO.md --chain --apply   # each open item waits for the one above it
      ralph export | ralph --db other.db import - --apply
      ralph import github:acme/app --label ralph --apply
    """
    if str(file).startswith("github:"):
        _import_github(str(file), label, state, prefix, apply, as_json)
        return
    from ralph.ops.importers import import_file  # lazy: start-up

    plan = import_file(store(create=True), file, fmt=fmt, chain=chain, apply=apply)
    if as_json:
        emit_json(plan.to_dict())
        return
    existing = len(plan.tasks) - len(plan.new)
    there = f" ({existing} already in the store)" if existing else ""
    if apply:
        source = "stdin" if plan.source == "-" else plan.source
        echo(f"Imported {len(plan.added)} tasks from {source}{there}")
        for note in plan.notes:
            echo(f"  {note}")
        return
    if plan.tasks:
        _preview(plan)
    echo(
        f"Dry run: {len(plan.new)} new tasks from {plan.source} ({plan.format}){there}. "
        "Nothing written; add --apply to import them."
    )


def _import_github(
    source: str, label: str | None, state: str, prefix: str, apply: bool, as_json: bool
) -> None:
    from ralph.ops.github_issues import apply_github, plan_github

    plan = plan_github(store(create=True), source, label=label, state=state, prefix=prefix)
    if apply:
        apply_github(store(), plan)
    if as_json:
        emit_json(plan.to_dict())
        return
    counts = (
        f"{len(plan.new)} new, {len(plan.updated)} updated, {len(plan.unchanged)} unchanged, "
        f"{len(plan.deps)} dependencies"
    )
    if apply:
        echo(f"Imported from {plan.source}: {counts}")
    else:
        for spec in plan.new:
            echo(f"  new      {spec['id']}  {spec['title']}")
        for task_id in plan.updated:
            echo(f"  update   {task_id}")
        echo(f"Dry run: {counts} from {plan.source}. Nothing written; add --apply to import.")
    for note in plan.notes:
        echo(f"  {note}")


def _preview(plan) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table  # lazy: start-up
    from rich.text import Text  # lazy: start-up

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("", "ID", "Status", "Pri", "Title", "Parent", "Waits on"):
        table.add_column(column, overflow="fold")
    for task in plan.tasks:
        spec = task.spec
        new = task.id not in plan.existing
        table.add_row(
            Text("new" if new else "exists", style="green" if new else "dim"),
            Text(task.id),
            Text(spec.get("status", "open")),
            str(spec.get("priority", 0)),
            Text(spec["title"]),
            Text(spec.get("parent") or ""),
            Text(", ".join(spec.get("blocked_by") or [])),
        )
    console().print(table)


def export(
    fmt: Annotated[
        str, typer.Option("--format", metavar="jsonl|md", help="Output format.")
    ] = "jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE.")
    ] = None,
) -> None:
    """Export every task (ids, statuses, parents, dependencies) as JSONL or Markdown.

    The output imports back unchanged, into another store too.

    \b
    Examples:
      ralph export -o tasks.jsonl
      ralph export --format md -o TASKS.md
      ralph export | ralph --db other.db import - --apply
    """
    from ralph.ops.exporters import EXPORT_FORMATS, export_store  # lazy: start-up

    if fmt not in EXPORT_FORMATS:
        raise errors.UsageError(f"unknown export format {fmt!r}", hint="use jsonl or md")
    text = export_store(store(), fmt)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise errors.UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    count = text.count("\n") if fmt == "jsonl" else text.count("<!-- ralph ")
    echo(f"Exported {count} tasks to {output}")


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command()(init)
    app.command("import")(import_)
    app.command()(export)
