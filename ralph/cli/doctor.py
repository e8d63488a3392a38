"""`ralph doctor`: the checklist a newcomer runs first."""

from __future__ import annotations

from typing import Annotated

import typer

from ralph.cli.common import echo, emit_json, session
from ralph.errors import ConfigError
from ralph.store import project_root


def doctor(
    agent: Annotated[
        str | None, typer.Option("--agent", help="Check this agent instead of ralph.toml's.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Check the agent CLI (installed, version, credentials), the sandbox, git and the store.

    Prints one line per check and the fix for each failure; exits 0 when all pass, else with
    the configuration error code (8).

    \b
    Example:
      ralph doctor --agent codex
    """
    from ralph.config import load_settings  # lazy: start-up
    from ralph.doctor import run_checks  # lazy: start-up

    root = project_root()
    checks = run_checks(agent, root, session.db, load_settings(root))
    failed = [c for c in checks if not c.ok]
    if as_json:
        emit_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        for c in checks:
            echo(f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
            if not c.ok and c.fix:
                echo(f"      fix: {c.fix}")
        echo(f"{len(checks) - len(failed)} of {len(checks)} checks passed")
    if failed:
        raise typer.Exit(ConfigError.exit_code)


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command("doctor")(doctor)
