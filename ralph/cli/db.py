"""`ralph db status` and `ralph db upgrade`: the store's schema version and its migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from ralph.cli.common import echo, emit_json, session

db_app = typer.Typer(name="db", rich_markup_mode=None, add_completion=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@db_app.callback(invoke_without_command=True)
def _db(ctx: typer.Context) -> None:
    """The store's schema: which version it has, which migrations are pending; run them.

    \b
    Example:
      ralph db status
      ralph db upgrade
    """
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


@db_app.command()
def status(as_json: JsonOpt = False) -> None:
    """Show the store's schema version, this ralph's, and the pending migrations (writes nothing).

    \b
    Example:
      ralph db status
      store    .ralph/ralph.db (sqlite)
      schema   1 (ralph 0.1.0)
      ralph    0.2.0 (schema 2)
      pending  2: run `ralph db upgrade`, or any ralph command that writes
    """
    from ralph.store import schema_status
    from ralph.store.migrate import ralph_version

    state = schema_status(session.db)
    if as_json:
        emit_json(state.to_dict())
        return
    made_by = state.made_by
    if not state.exists:
        schema = "none yet: the first ralph command that writes creates it"
    else:
        schema = f"{state.version}" + (f" (ralph {made_by})" if made_by else "")
    if state.version > state.latest:
        pending = f"none: the store is newer; install ralph {made_by or '(newer)'} on this host"
    elif state.pending and state.exists:
        listed = ", ".join(str(v) for v in state.pending)
        pending = f"{listed}: run `ralph db upgrade`, or any ralph command that writes"
    else:
        pending = "none"
    echo(
        "\n".join(
            [
                f"store    {state.url} ({state.backend})",
                f"schema   {schema}",
                f"ralph    {ralph_version()} (schema {state.latest})",
                f"pending  {pending}",
            ]
        )
    )


@db_app.command()
def upgrade(as_json: JsonOpt = False) -> None:
    """Run the pending migrations now (creating the store if there is none); SQLite keeps a copy.

    \b
    Example:
      ralph db upgrade
      Upgraded .ralph/ralph.db from schema 1 to 2 (copy kept: .ralph/ralph.db.0.1.0.bak)
    """
    state = session.store().schema
    if as_json:
        emit_json(state.to_dict())
    elif state.upgraded_from is None:
        echo(f"{state.url} is at schema {state.version}: nothing to upgrade")
    elif state.upgraded_from == 0:
        echo(f"Created {state.url} at schema {state.version}")
    else:
        kept = f" (copy kept: {state.backup})" if state.backup else ""
        echo(f"Upgraded {state.url} from schema {state.upgraded_from} to {state.version}{kept}")


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.add_typer(db_app)
