"""`ralph db status|upgrade|backup|restore`: the store's schema, its integrity and its copies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ralph.cli.common import echo, emit_json, session
from ralph.errors import StoreError
from ralph.store import backup as copies
from ralph.store import schema_status, sqlite_path
from ralph.store.backup import quick_check, restore_hint
from ralph.store.migrate import ralph_version

db_app = typer.Typer(name="db", rich_markup_mode=None, add_completion=False)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@db_app.callback(invoke_without_command=True)
def _db(ctx: typer.Context) -> None:
    """The store's schema, integrity and copies: check it, upgrade it, back it up, restore it.

    \b
    Example:
      ralph db status
      ralph db upgrade
      ralph db backup
      ralph db restore .ralph/backups/ralph-20261206T031500123456Z.db
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
      ralph    0.4.0 (schema 3)
      pending  2: run `ralph db upgrade`, or any ralph command that writes
    """

    state = schema_status(session.db)
    problems = _integrity(state.url) if state.exists else []
    if as_json:
        emit_json({**state.to_dict(), "integrity": problems or ["ok"]})
    if problems:
        raise StoreError(
            f"{state.url} is corrupted (quick_check: {problems[0]})",
            hint=restore_hint(Path(state.url)),
        )
    if as_json:
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
                *(
                    ["check    ok (quick_check)"]
                    if state.exists and state.backend == "sqlite"
                    else []
                ),
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


@db_app.command()
def backup() -> None:
    """Copy the SQLite store now to .ralph/backups/ (the newest 5 are kept; `ralph run` takes
    one at start). For PostgreSQL use pg_dump.

    \b
    Example:
      ralph db backup
      Backed up .ralph/ralph.db to .ralph/backups/ralph-20261206T031500123456Z.db
    """

    path = _sqlite_path("backup", "pg_dump")
    echo(f"Backed up {path} to {copies.backup(path)}")


@db_app.command()
def restore(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A copy made by `ralph db backup`.")],
) -> None:
    """Put a backup in place of the SQLite store; refused while a worker uses the store. The
    replaced store is kept in .ralph/backups/ as ralph-replaced-<time>.db.

    \b
    Example:
      ralph db restore .ralph/backups/ralph-20261206T031500123456Z.db
    """

    path = _sqlite_path("restore", "pg_restore")
    kept = copies.restore(path, file)
    echo(f"Restored {path} from {file}" + (f" (the replaced store kept: {kept})" if kept else ""))


def _sqlite_path(what: str, tool: str) -> Path:
    """The SQLite store's file, or one line saying PostgreSQL has its own tools."""

    path = sqlite_path(session.db)
    if path is None:
        raise StoreError(
            f"`ralph db {what}` is for SQLite stores",
            hint=f"back PostgreSQL up with pg_dump/{tool}",
        )
    return path


def _integrity(url: str) -> list[str]:
    """quick_check's problems for a SQLite store ([] when sound; PostgreSQL is not checked)."""
    if "://" in url:
        return []

    return quick_check(Path(url))


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.add_typer(db_app)
