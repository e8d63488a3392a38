"""`ralph notify test`: send one message to each configured URL and say how each went."""

from __future__ import annotations

from typing import Annotated

import typer

from ralph.cli.common import echo, emit_json
from ralph.errors import NotifyError
from ralph.notify import resolve, send_test
from ralph.store import project_root

notify_app = typer.Typer(name="notify", rich_markup_mode=None, add_completion=False)


@notify_app.callback(invoke_without_command=True)
def _notify(ctx: typer.Context) -> None:
    """Notifications ([notify] urls in ralph.toml, or RALPH_NOTIFY_URLS): check they arrive.

    \b
    Example:
      RALPH_NOTIFY_URLS=ntfy://ntfy.sh/my-topic ralph notify test
    """
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


@notify_app.command("test")
def test(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Send one test message to each notification URL now; exit 14 if any failed.

    \b
    Example:
      ralph notify test
    """
    from ralph.config import load_settings  # lazy: start-up

    settings = load_settings(project_root())
    results = send_test(resolve(settings.notify, settings.source or "ralph.toml"))
    if as_json:
        emit_json(results)
    else:
        for r in results:
            echo(f"{'sent' if r['ok'] else 'FAILED'}  {r['url']}  ({r['seconds']:.1f}s)"
                 + (f": {r['error']}" if r["error"] else ""))  # fmt: skip
    failed = [r["url"] for r in results if not r["ok"]]
    if failed:
        raise NotifyError(f"{len(failed)} of {len(results)} notification URL(s) failed")


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.add_typer(notify_app)
