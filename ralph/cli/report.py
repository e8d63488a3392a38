"""`ralph report`: what the agents did (landed, failed, wasted, cost, parallelism)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ralph.cli.common import echo, store
from ralph.errors import UsageError
from ralph.ops.report import build_report, parse_since, render


def report(
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="DURATION|TIME", help="Attempts started since: 12h, or an ISO time."
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option("--run", metavar="ID|last", help="Only one run's attempts (its id, or last)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="text|md|html|json", help="Output format.")
    ] = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE.")
    ] = None,
) -> None:
    """What happened: tasks landed and failed, wasted launches by reason, cost by agent,
    agent time against wall time, the slowest tasks. HTML is one file with inline SVG charts.

    \b
    Examples:
      ralph report --since 12h
      ralph report --since 12h --format html -o night.html
      ralph report --run last --format md
    """

    if run is not None and since is not None:
        raise UsageError("give --since or --run, not both")
    text = render(build_report(store(), since=parse_since(since), run=run), fmt)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    echo(f"Report written to {output}")


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command()(report)
