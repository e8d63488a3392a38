"""Parallel workers: N loops in one process, each in its own git worktree, with a sweeper and a
live view.

`run_pool` gives every worker a `WorktreeWorkspace` (a branch per task in
`.ralph/worktrees/<worker>`, merged into the target under one lock), runs their loops as threads
with `pool.run_workers` (signals, grace period, release), keeps a `Sweeper` going for crash
recovery, and shows one row per worker (rich) or plain lines when stdout is not a terminal.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ralph import errors
from ralph.loop import RunOptions, WorkerLoop
from ralph.models import Task
from ralph.pool import RunControl, RunSummary, run_workers
from ralph.store.base import SQLStore
from ralph.sweeper import Sweeper
from ralph.vcs import Change, GitRepo
from ralph.worktrees import IntegrationError, Worktrees

SWEEP_INTERVAL = 10.0


def sweep_interval(lease: float) -> float:
    """How often a run's sweeper looks for dead workers: every 10 s, or lease/3 if shorter."""
    return min(SWEEP_INTERVAL, max(0.2, lease / 3))


def worker_names(count: int = 1, names: str | Iterable[str] | None = None) -> list[str]:
    """`worker-1..N`, or the given names (comma-separated or a list), which must be distinct."""
    if names:
        found = [n.strip() for n in (names.split(",") if isinstance(names, str) else names)]
        found = [n for n in found if n]
        if not found:
            raise errors.UsageError("--names is empty", hint="e.g. --names Alpha,Beta,Gamma")
        dup = sorted({n for n in found if found.count(n) > 1})
        if dup:
            raise errors.UsageError(f"worker name {dup[0]!r} appears twice in --names")
        return found
    if count < 1:
        raise errors.UsageError(f"invalid --workers {count}: at least 1")
    return [f"worker-{n}" for n in range(1, count + 1)]


def check_names_free(store: SQLStore, names: Iterable[str]) -> None:
    """Refuse names a live worker elsewhere is using: two loops would share one worktree."""
    now, host = time.time(), os.uname().nodename
    wanted = set(names)
    for w in store.workers():
        if (
            w.name in wanted
            and w.state(now) in ("idle", "busy")
            and not (w.host == host and w.pid and not _alive(w.pid))
        ):
            raise errors.UsageError(
                f"worker {w.name} is already running (pid {w.pid} on {w.host})",
                hint="pick other names with --names, or stop it with `ralph worker stop`",
            )


def _alive(pid: int) -> bool:
    """Whether a process of this host still exists (a crashed worker's row looks live a while)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorktreeWorkspace:
    """One worker's workspace for the loop: its own worktree, a branch per task, a fenced merge.

    The fence: the token of the claim this worker holds is read when the task is prepared, and
    the merge moves the target only while that claim is still live with that token.
    """

    def __init__(
        self,
        worktrees: Worktrees,
        store: SQLStore,
        worker: str,
        *,
        wait: Callable[[float], bool] | None = None,
        log: Callable[[str], None] = lambda line: None,
        blocked_poll: float = 2.0,
    ):
        self.worktrees = worktrees
        self.root = worktrees.root
        self.store = store
        self.worker = worker
        self.wait = wait or (lambda s: not threading.Event().wait(s))
        self.log = log
        self.blocked_poll = blocked_poll
        self.path = worktrees.path_for(worker)
        self._repo: GitRepo | None = None
        self._token: int | None = None

    @property
    def repo(self) -> GitRepo:
        if self._repo is None:
            self._repo = GitRepo(self.path)
        return self._repo

    def prepare(self, task: Task) -> Path:
        claim = self.store.active_claim(task.id)
        self._token = claim.token if claim and claim.worker == self.worker else None
        # `worker list` shows the task now, not at the next heartbeat (up to 10 s later).
        for w in self.store.workers():
            if w.name == self.worker:
                self.store.heartbeat(w.id, status="busy", current_task=task.id)
        self.path = self.worktrees.prepare(self.worker, task.id)
        return self.path

    def changes(self) -> list[Change]:
        return self.repo.changes()

    def commit(self, task: Task, changes: list[Change], message: str) -> str | None:
        # The worktree was reset to a fresh task branch: only the agent's changes can be staged.
        return self.repo.commit([c.path for c in changes], message, index_is_ours=True)

    def _lease_is_ours(self, task: Task) -> Callable[[], bool]:
        def check() -> bool:
            claim = self.store.active_claim(task.id)
            return claim is not None and claim.worker == self.worker and claim.token == self._token

        return check

    def integrate(self, task: Task, sha: str | None) -> str | None:
        """Merge the task branch; returns the commit now on the target (after the rebase)."""
        if sha is None:
            return None
        waited = False
        while True:
            result = self.worktrees.integrate(self.worker, task.id, self._lease_is_ours(task))
            if result.status == "merged":
                if result.message:  # remote.py: where the commit went, or why the local
                    self.log(f"{task.id}: {result.message}")  # target did not follow
                return result.commit
            if result.status == "empty":
                return None
            if result.status == "conflict":
                raise IntegrationError("merge_conflict", result.note())
            if result.status == "lease_lost":
                raise IntegrationError("lease_lost", result.message)
            if result.status == "push_failed":
                raise IntegrationError("push_failed", result.message)
            if not waited:  # blocked: the user is editing the checked-out target branch
                self.log(f"{task.id}: waiting to merge: {result.message}")
                waited = True
            if not self.wait(self.blocked_poll):
                raise IntegrationError(
                    "interrupted",
                    f"the run stopped while waiting to merge ({result.message}); "
                    f"the commit stays on {result.branch}",
                )

    def discard(self, task: Task, changes: list[Change], keep: Path | None = None) -> None:
        if keep is not None:
            self.repo.save_patch(changes, keep)
        self.repo.discard(changes)

    def undo(self, task: Task, sha: str) -> None:
        """After a refused `done`: drop the commit unless it already reached the target."""
        if self.worktrees.contains(sha):
            self.log(
                f"{task.id}: its commit {sha[:10]} already reached "
                f"{self.worktrees.target}; the task stays open for its new holder"
            )
        else:
            self.repo.undo_commit(sha)


# -- the live view ---------------------------------------------------------------------------


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
        from rich.console import Console

        self.store, self.loops, self.control = store, loops, control
        self.refresh = refresh
        self.console = Console(file=sys.stdout)
        self.rows = {w.opt.worker: _Row(w.opt.worker) for w in loops}
        self.start_done = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None

    def __enter__(self) -> LiveView:
        from rich.live import Live

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
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

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


# -- running a pool ----------------------------------------------------------------------------


def run_pool(
    store: SQLStore,
    options: RunOptions,
    control: RunControl,
    *,
    names: list[str],
    repo: Path | str = ".",
    target: str | None = None,
    remote: str | None = None,
    push_branches: bool = False,
    live: bool | None = None,
    sweep_every: float | None = None,
    handle_signals: bool = True,
) -> RunSummary:
    """Run one worker loop per name, each in its own worktree; returns the run's summary.

    `live=None` shows the live view only when stdout is a terminal. With `remote`, each task's
    commit is pushed to that git remote's target branch (or its own branch: `push_branches`).
    """
    check_names_free(store, names)
    lock, plain = threading.Lock(), control.log

    def log(line: str) -> None:  # one whole line at a time from N threads
        with lock:
            plain(line)

    control.log = log
    if remote is None:
        worktrees = Worktrees(repo, target=target)
    else:
        from ralph.remote import RemoteWorktrees

        worktrees = RemoteWorktrees(repo, remote, target=target, push_branches=push_branches)
        worktrees.log = control.log
    worktrees.start(names)
    loops = []
    for name in names:
        workspace = WorktreeWorkspace(
            worktrees,
            store,
            name,
            wait=control.wait,
            log=lambda line, n=name: control.log(f"[{n}] {line}"),
        )
        loops.append(
            WorkerLoop(store, workspace, dataclasses.replace(options, worker=name), control)
        )
    if live is None:
        live = sys.stdout.isatty()
    interval = sweep_every or sweep_interval(options.lease)
    view = LiveView(store, loops, control) if live else None
    try:
        with Sweeper(store, interval=interval):
            if view is None:
                return run_workers(loops, control, handle_signals=handle_signals)
            with view:
                return run_workers(loops, control, handle_signals=handle_signals)
    finally:
        for name in names:
            try:
                worktrees.finish(name)
            except Exception as exc:  # leave it for the next start's repair
                control.log(f"[{name}] could not tidy its worktree: {exc}")
        worktrees.close()
