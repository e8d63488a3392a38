"""The live view of a run in a terminal: one row per worker and a progress bar (rich)."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import Any

from ralph.control import RunControl
from ralph.store.base import SQLStore
from ralph.worker import WorkerLoop


@dataclasses.dataclass
class _Row:
    name: str
    task: str | None = None
    title: str = ""
    attempt: int = 0
    since: float = 0.0
    cost: float = 0.0
    done: int = 0


class LiveView:
    """One row per worker (idle/busy, task, elapsed, attempt, cost) and a progress bar.

    It polls the workers' loops from its own thread; nothing in the loop waits on it. Log lines
    print above the table while it is shown.
    """

    def __init__(
        self, store: SQLStore, loops: list[WorkerLoop], control: RunControl, *, refresh: float = 0.5
    ):
        from rich.console import Console  # lazy: start-up

        self.store, self.loops, self.control = store, loops, control
        self.refresh = refresh
        self.console = Console(file=sys.stdout)
        self.rows = {w.opt.worker: _Row(w.opt.worker) for w in loops}
        self.start_done = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None

    def __enter__(self) -> LiveView:
        from rich.live import Live  # lazy: start-up

        self._live = Live(
            self.render(), console=self.console, refresh_per_second=4, transient=False
        )
        self._live.__enter__()
        previous_log = self.control.log
        self.control.log = lambda line: self.console.print(line, markup=False, highlight=False)
        self._previous_log = previous_log
        self._thread = threading.Thread(target=self._run, name="ralph-live", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.poll()
        self._live.update(self.render())
        self._live.__exit__(None, None, None)
        self.control.log = self._previous_log

    def _run(self) -> None:
        while not self._stop.wait(self.refresh):
            try:
                self.poll()
                self._live.update(self.render())
            except Exception as exc:  # the view must never take the run down
                self.control.log(f"live view: {exc}")

    def poll(self) -> None:
        now = time.monotonic()
        for loop in self.loops:
            row = self.rows[loop.opt.worker]
            current = loop.current
            if current != row.task:
                if row.task is not None:
                    self._finished(row)
                row.task, row.since = current, now
                if current is not None:
                    task = self.store.get(current)
                    row.title, row.attempt = task.title, task.attempts + 1

    def _finished(self, row: _Row) -> None:
        mine = [a for a in self.store.attempts(row.task) if a.worker == row.name]
        if mine:
            row.cost += mine[-1].cost_usd or 0.0
            row.done += mine[-1].outcome in ("success", "no_changes")

    def render(self) -> Any:
        from rich.console import Group  # lazy: start-up
        from rich.progress_bar import ProgressBar  # lazy: start-up
        from rich.table import Table  # lazy: start-up

        table = Table(expand=False, pad_edge=False, box=None, header_style="bold")
        for col in ("worker", "state", "task", "elapsed", "attempt", "cost", "done"):
            table.add_column(col, justify="right" if col in ("elapsed", "cost", "done") else "left")
        now = time.monotonic()
        for row in self.rows.values():
            busy = row.task is not None
            table.add_row(
                row.name,
                "[yellow]busy[/]" if busy else "[dim]idle[/]",
                f"{row.task} {row.title[:40]}" if busy else "",
                f"{now - row.since:.0f}s" if busy else "",
                str(row.attempt) if busy else "",
                f"${row.cost:.4f}",
                str(row.done),
            )
        s = self.control.summary
        finished = s.done + s.failed
        left = self.store.status_counts().get("open", 0)
        total = max(1, finished + left)
        bar = ProgressBar(total=total, completed=finished, width=40)
        line = Table.grid(padding=(0, 1))
        line.add_row(
            bar, f"{finished}/{finished + left} tasks", f"{s.commits} commits", f"${s.cost_usd:.4f}"
        )
        return Group(table, line)
