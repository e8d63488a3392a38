"""The `ralph` command line: a thin layer over the store (parse, one library call, render).

Commands live in the modules named in COMMAND_MODULES; each has `register(app, worker_app)`.
A module that is not there (yet) is skipped, so another part of ralph can add its commands
by adding its module. `main` imports only the invoked command's module (COMMANDS_OF), so
`ralph ready` does not pay for `ralph run`'s; `ralph.cli.app` and `build_command()` have them all.
"""

from __future__ import annotations

import copy
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.main import get_command

from ralph import __version__
from ralph.cli.common import session
from ralph.errors import EXIT_CODES, RalphError, StoreError
from ralph.store import sqlite_path
from ralph.store.migrate import latest

COMMAND_MODULES = (
    "tasks",
    "claims",
    "workers",
    "events",
    "run",
    "ops",
    "monitor",
    "doctor",
    "web",
    "db",
    "notify",
    "report",
    "metrics",
    "review",
)

# `ralph claim release ID W` is another spelling of `ralph claim:release ID W` (tx accepts both).
CLAIM_SUBCOMMANDS = ("release", "renew", "expired", "expire", "show", "release-worker")

# What each module registers (`worker` is a group filled by two). A test checks this table
# against what the modules really register.
COMMANDS_OF: dict[str, tuple[str, ...]] = {
    "tasks": ("add", "list", "show", "update", "done", "retry", "block", "unblock", "ready"),
    "claims": ("claim", *(f"claim:{c}" for c in CLAIM_SUBCOMMANDS)),
    "workers": ("pause", "resume", "worker"),
    "events": ("events",),
    "run": ("run", "demo", "worker"),
    "ops": ("init", "import", "export"),
    "monitor": ("status", "logs", "stats", "dep"),
    "doctor": ("doctor",),
    "web": ("web",),
    "db": ("db",),
    "notify": ("notify",),
    "report": ("report",),
    "metrics": ("metrics",),
    "review": ("review", "approve", "reject"),
}

# `ralph --help` lists commands in these panels, in this order; a command another part of ralph
# adds and this table does not name yet goes under "Other".
HELP_PANELS: dict[str, tuple[str, ...]] = {
    "Run": (
        "demo",
        "init",
        "run",
        "status",
        "logs",
        "stats",
        "report",
        "metrics",
        "notify",
        "web",
        "doctor",
    ),
    "Tasks": (
        "add",
        "list",
        "show",
        "update",
        "done",
        "retry",
        "block",
        "unblock",
        "ready",
        "dep",
    ),
    "Claims": (
        "claim",
        "claim:renew",
        "claim:release",
        "claim:release-worker",
        "claim:show",
        "claim:expired",
        "claim:expire",
        "events",
    ),
    "Workers": ("worker", "pause", "resume"),
    "Review": ("review", "approve", "reject"),
    "Import/export": ("import", "export"),
    "Store": ("db",),
}
OTHER_PANEL = "Other"


class RalphGroup(TyperGroup):
    """The top-level group: maps spaced claim spellings, builds commands on first use, and is
    the CLI's one error boundary."""

    def defer(self, name: str, build: Callable[[], Any]) -> None:
        """Register a command that typer turns into a click command only when it is used."""
        if not hasattr(self, "_deferred"):
            self._deferred: dict[str, Callable[[], Any]] = {}
        self._deferred[name] = build

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        deferred = getattr(self, "_deferred", {})
        if cmd_name not in self.commands and cmd_name in deferred:
            self.commands[cmd_name] = deferred.pop(cmd_name)()
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *getattr(self, "_deferred", {})]

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, Any, list[str]]:
        if len(args) >= 2 and args[0] == "claim" and args[1] in CLAIM_SUBCOMMANDS:
            name = f"claim:{args[1]}"
            return name, self.get_command(ctx, name), args[2:]
        if args and self.get_command(ctx, args[0]) is None:
            for name in self.list_commands(ctx):  # complete the "did you mean" suggestions
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list grouped by each command's `rich_help_panel` (see HELP_PANELS), as
        plain click sections: help stays fast and readable in a pipe."""
        order = {
            name: n for n, name in enumerate(c for names in HELP_PANELS.values() for c in names)
        }
        panels: dict[str, list[tuple[str, str]]] = {p: [] for p in (*HELP_PANELS, OTHER_PANEL)}
        names = sorted(self.list_commands(ctx), key=lambda c: (order.get(c, len(order)), c))
        width = formatter.width - 6 - max((len(c) for c in names), default=0)
        for name in names:
            cmd = self.get_command(ctx, name)
            if cmd is None or cmd.hidden:
                continue
            panel = getattr(cmd, "rich_help_panel", None) or OTHER_PANEL
            panels.setdefault(panel, []).append((name, cmd.get_short_help_str(width)))
        for panel, rows in panels.items():
            if rows:
                with formatter.section(panel):
                    formatter.write_dl(rows)

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        """Run a command; a RalphError becomes one `error: ...` line and its exit code."""
        argv = list(sys.argv[1:] if args is None else args)
        extra.pop("standalone_mode", None)
        try:
            code = super().main(
                args=argv, prog_name=prog_name or "ralph", standalone_mode=False, **extra
            )
        except RalphError as exc:
            code = _fail(exc.line(), exc.exit_code, argv)
        except typer.TyperException as exc:  # click's usage errors: bad option, missing argument
            where = getattr(getattr(exc, "ctx", None), "command_path", None) or "ralph"
            message = " ".join(exc.format_message().split())
            code = _fail(f"{message} (see `{where} --help`)", exc.exit_code, argv)
        except (KeyboardInterrupt, typer.Abort):
            code = _fail("interrupted", 130, argv)
        except BrokenPipeError:
            # The reader (head, jq -e ...) went away: not an error of ours.
            sys.stderr.close()
            code = 0
        except Exception as exc:
            known = _store_error(exc)
            if known is not None:
                code = _fail(known.line(), known.exit_code, argv)
            else:
                code = _fail(
                    f"unexpected {type(exc).__name__}: {exc} "
                    "(rerun with --debug to see the traceback)",
                    1,
                    argv,
                )
        finally:
            session.close()
        sys.exit(code or 0)


def _store_error(exc: Exception) -> StoreError | None:
    """A driver error saying the database itself is broken, as the documented exit 7.

    SQLite reads pages lazily: a file with a valid header and junk pages opens fine and fails
    only in the first query ("database disk image is malformed"), deep inside a command.
    """

    if type(exc) is not sqlite3.DatabaseError:  # subclasses (locked, constraint) are not corruption
        return None
    from ralph.store.backup import restore_hint  # lazy: start-up (only for a corrupt store)

    try:
        path = sqlite_path(session.db)
    except StoreError:
        path = None
    if path is not None:
        return StoreError(f"cannot use {path}: {exc}", hint=restore_hint(path))
    where = session.db or "the task store"
    return StoreError(
        f"cannot use {where}: {exc}",
        hint="restore it from a backup, or point --db or RALPH_DB at another database file",
    )


def _fail(line: str, code: int, argv: Sequence[str]) -> int:
    if session.debug or "--debug" in argv:
        traceback.print_exc()
    sys.stderr.write(f"error: {line}\n")
    return code


_app = typer.Typer(
    cls=RalphGroup,
    name="ralph",
    epilog="\b\nExit codes:\n"
    + "\n".join(f"  {code:>2}  {what}" for code, what in EXIT_CODES.items()),
    invoke_without_command=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
worker_app = typer.Typer(name="worker", rich_markup_mode=None, add_completion=False)
_app.add_typer(worker_app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ralph {__version__} (store schema {latest('sqlite')})")
        raise typer.Exit()


@_app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="RALPH_DB",
            metavar="PATH|URL",
            show_envvar=True,
            help="Task store: a file path, sqlite:///path or postgresql://... "
            "[default: .ralph/ralph.db at the project's top folder]",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback when a command fails.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and the store schema it writes, and exit.",
        ),
    ] = False,
) -> None:
    """ralph: Run Agent Loop Per Host. A task store with dependencies and leased claims, and a
    loop that runs a fresh coding agent per task and commits its work.

    \b
    Example (three parallel workers, each in its own git worktree):
      ralph init && git add ralph.toml prompts && git commit -m "Set up ralph"
      ralph add "Write the parser" && ralph add "Write the tests"
      ralph run --workers 3 --agent claude
    """
    session.reset(db, debug)
    ctx.call_on_close(session.close)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


@worker_app.callback(invoke_without_command=True)
def _worker(ctx: typer.Context) -> None:
    """Registered worker processes: list them, ask one to stop, start one.

    \b
    Example:
      ralph worker list --all
    """
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


_loaded: set[str] = set()


def load_commands(modules: Iterable[str] = COMMAND_MODULES) -> None:
    """Import these command modules (once each) and register their commands."""
    for name in modules:
        if name in _loaded:
            continue
        _loaded.add(name)
        try:
            # The import statement, not importlib: only its imports show in `python -X
            # importtime`, which bench/bench_cli.py reads.
            __import__(f"ralph.cli.{name}")
            module = sys.modules[f"ralph.cli.{name}"]
        except ModuleNotFoundError as exc:
            if exc.name != f"ralph.cli.{name}":
                raise
            continue
        module.register(_app, worker_app)
    _assign_panels()


def modules_for(argv: Sequence[str]) -> Iterable[str]:
    """The command modules a command line needs: the invoked command's own, else all of them
    (help, a misspelt name that wants "did you mean", shell completion)."""
    if "_RALPH_COMPLETE" in os.environ:
        return COMMAND_MODULES
    args = iter(argv)
    for arg in args:
        if arg == "--db":
            next(args, None)
        elif arg in ("-h", "--help"):
            return COMMAND_MODULES
        elif not arg.startswith("-"):
            return [m for m, names in COMMANDS_OF.items() if arg in names] or COMMAND_MODULES
    return COMMAND_MODULES


def _assign_panels() -> None:
    """Put every registered command and group into its HELP_PANELS panel."""
    panel_of = {name: panel for panel, names in HELP_PANELS.items() for name in names}
    for info in _app.registered_commands:
        name = info.name or typer.main.get_command_name(info.callback.__name__)
        info.rich_help_panel = info.rich_help_panel or panel_of.get(name, OTHER_PANEL)
    for group in _app.registered_groups:
        name = group.name or group.typer_instance.info.name
        group.rich_help_panel = group.rich_help_panel or panel_of.get(name, OTHER_PANEL)


def __getattr__(name: str) -> Any:
    """`ralph.cli.app`: the typer app with every command registered (tests, CliRunner)."""
    if name == "app":
        load_commands()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_command(modules: Iterable[str] = COMMAND_MODULES) -> RalphGroup:
    """The click group for `app` with the commands of `modules`, each built lazily.

    typer turns each command's signature into click parameters when the group is built; for
    twenty-odd commands that was a third of ralph's own start-up, paid by `ralph ready` and
    `ralph claim` in every loop iteration. Here only the invoked command is built.
    """
    load_commands(modules)
    app = _app
    shell = copy.copy(app)
    shell.registered_commands, shell.registered_groups = [], []
    group = get_command(shell)
    assert isinstance(group, RalphGroup)
    opts: dict[str, Any] = {
        "pretty_exceptions_short": app.pretty_exceptions_short,
        "rich_markup_mode": app.rich_markup_mode,
    }
    for info in app.registered_commands:
        name = info.name or typer.main.get_command_name(info.callback.__name__)
        group.defer(name, partial(typer.main.get_command_from_info, info, **opts))
    for info in app.registered_groups:
        name = typer.main.solve_typer_info_defaults(info).name
        group.defer(
            name,
            partial(
                typer.main.get_group_from_info, info, suggest_commands=app.suggest_commands, **opts
            ),
        )
    return group


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `ralph` console script and `python -m ralph`."""
    args = list(sys.argv[1:] if argv is None else argv)
    build_command(modules_for(args)).main(args=args, prog_name="ralph")
