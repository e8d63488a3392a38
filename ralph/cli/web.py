"""`ralph web`: serve the dashboard (needs the optional extra: pip install 'ralph[web]').

Starlette and uvicorn are imported inside the command, so no other command pays for them.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ralph.cli.common import session
from ralph.errors import ConfigError, UsageError
from ralph.store import project_root

if TYPE_CHECKING:
    import socket

TOKEN_ENV = "RALPH_WEB_TOKEN"


def web(
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on (loopback: reads need no login, changes do)."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0: a free one, printed).")
    ] = 8765,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Refuse every action: look, don't touch.")
    ] = False,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the dashboard in a browser.")
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            show_envvar=True,
            help="Access token, required off loopback; 'generate' makes one and prints it once.",
        ),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option(
            "--repo", help="Git repository the task commits are in. [default: the project's]"
        ),
    ] = None,
) -> None:
    """Serve the operator's dashboard: workers, queue, cost charts, tasks, live transcripts.

    On loopback anyone on this machine may look; changes need the login link printed at start
    (it sets an HttpOnly cookie; no page carries the token). Off loopback every page needs it.

    \b
    Examples:
      ralph web --open
      ralph web --read-only
      ralph web --host 0.0.0.0 --token generate     # prints the login URL once
      RALPH_DB=postgresql://ralph@db/ralph ralph web --host 10.0.0.5 --token "$TOKEN"
    """
    try:
        import uvicorn  # lazy: start-up (the optional [web] extra)

        from ralph.web.app import create_app  # lazy: start-up
        from ralph.web.security import Guard, new_token  # lazy: start-up
    except ImportError as exc:
        raise ConfigError(
            f"`ralph web` needs the web extra ({exc.name} is not installed)",
            hint="pip install 'ralph[web]'",
        ) from exc
    from ralph.store.postgres import redact  # lazy: start-up

    generated = token == "generate"
    if generated:
        token = new_token()
    sock = _bind(host, port)  # bound once, here: the port printed is the port served
    port = sock.getsockname()[1]
    guard = Guard.for_bind(host, port, token, read_only=read_only)
    db = session.store(upgrade=not read_only)  # --read-only never migrates a store
    label = redact(db.url) if "://" in db.url else db.url
    root = repo or project_root()
    app = create_app(db, guard, repo=root if (root / ".git").exists() else None, db_label=label)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    lines = [f"ralph web: {label} at {url} (Ctrl-C stops)"]
    login = f"{url}login?token={guard.token}"
    if generated or (guard.open_reads and not read_only and not token):
        # Printed once, to this terminal only: no page carries it. Loopback reads are open;
        # changes (and off loopback, reads too) need the session this link opens.
        lines.append(f"log in (to make changes) at {login}")
    # One write: whoever sees the URL line has the login line too (a Ctrl-C right after the
    # first line cannot cut the link off).
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
    if open_browser:
        import webbrowser  # lazy: start-up (only for --open)

        target = url if read_only and guard.open_reads else login
        threading.Timer(0.8, webbrowser.open, args=(target,)).start()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=os.environ.get("RALPH_WEB_LOG", "warning"),
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, or one line, before the store is opened, when the address cannot
    be served. Port 0 takes a free one."""
    import socket  # lazy: start-up (~1.3 ms that no other command needs)

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UsageError(f"cannot serve on {host}: {exc.strerror or exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}",
            hint="pick another with --port, or --port 0 for a free one",
        ) from exc
    return sock


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command()(web)
