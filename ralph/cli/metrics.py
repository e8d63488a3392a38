"""`ralph metrics`: Prometheus metrics of the store, for hosts that do not run `ralph web`."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ralph import metrics as ops
from ralph.cli.common import echo, store
from ralph.errors import UsageError


def metrics(
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Serve /metrics on this port until Ctrl-C."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Print the Prometheus metrics once, or serve them on --port (the same numbers as
    `ralph stats`, read from the store at every scrape; `ralph web` serves them at /metrics).

    \b
    Examples:
      ralph metrics
      ralph metrics --port 9464 --host 0.0.0.0
    """

    s = store()
    if port is None:
        body, _ = ops.exposition(s)
        typer.echo(body.decode(), nl=False)
        return
    try:
        ops.serve(s, port, host)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    echo(f"Serving Prometheus metrics on http://{host}:{port}/metrics (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command()(metrics)
