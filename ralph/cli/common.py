"""What every command shares: the open store, JSON output and task rendering.

Kept free of rich: the hot commands (`ready --json`, `claim`, `done`, `claim:release`) print
plain text or JSON, and rich is imported only when a table goes to a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import typer

from ralph.durations import format_duration
from ralph.models import Claim, Task, iso
from ralph.store import SQLStore, open_store


class Session:
    """The global options of one invocation and the store they point at, opened on first use."""

    def __init__(self) -> None:
        self.db: str | None = None
        self.debug = False
        self._store: SQLStore | None = None

    def reset(self, db: str | None, debug: bool) -> None:
        self.close()
        self.db, self.debug = db, debug

    def store(self, *, upgrade: bool = True, create: bool = True) -> SQLStore:
        """The session's store; `upgrade=False` (read-only users) never migrates it and
        `create=False` (read commands) refuses a missing SQLite file instead of making one."""
        if self._store is None:
            self._store = open_store(self.db, upgrade=upgrade, create=create)
            done = self._store.schema
            if done.upgraded_from:  # an older store, upgraded by this opening: say so once
                kept = f"; copy kept: {done.backup}" if done.backup else ""
                sys.stderr.write(
                    f"ralph: upgraded {done.url} from schema {done.upgraded_from} to "
                    f"{done.version}{kept}\n"
                )
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


session = Session()


def store(*, create: bool = False) -> SQLStore:
    """The store named by --db / RALPH_DB / the project's `.ralph/ralph.db`.

    Only commands that add work (`add`, `import`) pass `create`: a read, or a change to a
    task that cannot exist yet, outside a project says to run `ralph init` (NoStoreError).
    """
    return session.store(create=create)


def echo(text: str = "") -> None:
    typer.echo(text)


def emit_json(value: Any) -> None:
    """Print a JSON document (arrays of tasks are what `add --from` reads back)."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def tasks_json(tasks: Iterable[Task]) -> list[dict[str, Any]]:
    now = time.time()
    return [t.to_dict(now) for t in tasks]


def is_tty() -> bool:
    return sys.stdout.isatty()


def claim_line(claim: Claim, now: float | None = None) -> str:
    """`worker-1 (token 7) until 2026-...Z (29m58s left)`."""
    now = time.time() if now is None else now
    left = format_duration(claim.expires_at - now)
    return f"{claim.worker} (token {claim.token}) until {iso(claim.expires_at)} ({left} left)"


def task_flags(task: Task, now: float) -> str:
    """The short state of a task: ready, claimed by W, blocked by X, retry at T."""
    if task.status != "open":
        return ""
    if task.lease_expires > now and task.claimed_by:
        return f"claimed by {task.claimed_by}"
    if task.open_blockers:
        return "blocked by " + ", ".join(task.blocked_by) if task.blocked_by else "blocked"
    if task.open_children:
        return "waiting on children"
    if task.not_before > now:
        return f"retry at {iso(task.not_before)}"
    return "ready"


def render_tasks(tasks: Sequence[Task], *, empty: str = "No tasks") -> None:
    """A rich table on a terminal, aligned plain lines otherwise (stable for grep and awk)."""
    if not tasks:
        echo(empty)
        return
    now = time.time()
    if is_tty():
        _rich_tasks(tasks, now)
        return
    id_w = max(len(t.id) for t in tasks)
    st_w = max(len(t.status) for t in tasks)
    out = []
    for t in tasks:
        flags = task_flags(t, now)
        line = f"{t.id:<{id_w}}  {t.status:<{st_w}}  p{t.priority:<3} {t.title}"
        out.append(f"{line}  [{flags}]" if flags else line)
    sys.stdout.write("\n".join(out) + "\n")


def _rich_tasks(tasks: Sequence[Task], now: float) -> None:
    from rich.console import Console  # lazy: start-up
    from rich.table import Table  # lazy: start-up
    from rich.text import Text  # lazy: start-up

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "Status", "Pri", "Title", "State", "Labels"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "failed": "red", "cancelled": "dim", "open": ""}
    for t in tasks:
        table.add_row(
            Text(t.id),
            Text(t.status, style=colours.get(t.status, "")),
            str(t.priority),
            Text(t.title),
            Text(task_flags(t, now)),
            Text(", ".join(t.labels)),
        )
    Console().print(table)
