"""Running N >= 1 workers: one code path whatever the workspace.

`run` gives each worker a workspace (the checkout itself for one worker, a worktree each
otherwise, or worktrees landing on a git remote), first completes every task whose commit is
already on the target (the run-start reconcile), keeps a sweeper going for crash recovery, runs
the loops as threads, and turns SIGTERM/SIGINT/SIGHUP into a warm then a cold stop.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from ralph import errors, hostid, reaper
from ralph.control import RunControl, RunSummary
from ralph.options import RunOptions, Workspace
from ralph.store.base import SQLStore
from ralph.sweeper import Sweeper
from ralph.worker import WorkerLoop

Mode = Literal["checkout", "worktree"]
SWEEP_INTERVAL = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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
    """Refuse names a live worker elsewhere is using: two loops would share one worktree.
    Liveness is judged by the store's clock, never this host's against a database time."""
    now = store.now()
    wanted = set(names)
    for w in store.workers():
        if (
            w.name in wanted
            and w.state(now) in ("idle", "busy")
            and not (hostid.this_host(w.host) and w.pid and not reaper.alive(w.pid))
        ):
            raise errors.UsageError(
                f"worker {w.name} is already running (pid {w.pid} on {w.host})",
                hint="pick other names with --names, or stop it with `ralph worker stop`",
            )
    return True


def _end_orphans(workspace: Workspace, grace: float, log: Any) -> None:
    """Agents of a killed run outlive it and write on into its workspaces; the names are ours
    now (check_names_free), so whatever still runs there is an orphan."""
    ended = reaper.end_orphans(str(workspace.path), grace)
    if ended:
        log(f"ended {ended} orphaned agent process(es) still running in {workspace.path}")


def reconcile(store: SQLStore, workspace: Workspace, log: Any = None) -> list[str]:
    """Complete every task whose commit is on the target but which the store does not have as
    done (a worker killed between the landing and `done`); returns their ids."""
    landed = workspace.landed_all()
    fixed = []
    known = {t.id: t for t in store.get_many_known(list(landed))}
    for task_id, sha in landed.items():
        task = known.get(task_id)
        if task is None or (task.status == "done" and task.commit_sha):
            continue
        if store.reconcile(task_id, sha):
            fixed.append(task_id)
            if log:
                log(f"{task_id}: its commit {sha[:10]} is on {workspace.target}; marked done")
    return fixed


def run(
    store: SQLStore,
    options: RunOptions,
    control: RunControl,
    *,
    names: list[str],
    repo: Path | str = ".",
    mode: Mode = "worktree",
    **kwargs: Any,
) -> RunSummary:
    """Run one worker loop per name, holding the repository's run locks (ralph/runlock.py:
    a run in the checkout is alone; worktree runs share, one process per worker name)."""
    from ralph import runlock

    with runlock.hold(Path(repo), checkout=mode == "checkout", names=names):
        return _run(store, options, control, names=names, repo=repo, mode=mode, **kwargs)


def _run(
    store: SQLStore,
    options: RunOptions,
    control: RunControl,
    *,
    names: list[str],
    repo: Path | str = ".",
    mode: Mode = "worktree",
    allow_dirty: bool = False,
    target: str | None = None,
    remote: str | None = None,
    push_branches: bool = False,
    live: bool | None = None,
    sweep_every: float | None = None,
    handle_signals: bool = True,
) -> RunSummary:
    """Run one worker loop per name; returns the run's summary (exit code included)."""
    check_names_free(store, names)
    lock, plain = threading.Lock(), control.log

    def log(line: str) -> None:  # one whole line at a time from N threads
        with lock:
            plain(line)

    control.log = log
    workspaces, worktrees = _workspaces(
        names, Path(repo), mode, allow_dirty, target, remote, push_branches, control,
        options.settings.merge_lock_timeout,
    )  # fmt: skip
    for name, ws in zip(names, workspaces, strict=True):
        _end_orphans(ws, options.kill_grace, lambda line, n=name: control.log(f"[{n}] {line}"))
        for kept in getattr(ws, "leftovers", []):
            control.log(f"[{name}] saved what a killed attempt left in the checkout: {kept}")
    reconcile(store, workspaces[0], control.log)
    loops = [
        WorkerLoop(store, ws, dataclasses.replace(options, worker=name), control)
        for name, ws in zip(names, workspaces, strict=True)
    ]
    if live is None:
        live = sys.stdout.isatty()
    interval = sweep_every or sweep_interval(options.lease)
    control.share_pauses(store, names)  # a rate-limit pause shows on every host's status
    try:
        with Sweeper(store, interval=interval, on_sweep=control.swept):
            if not live:
                return run_workers(loops, control, handle_signals=handle_signals)
            from ralph.liveview import LiveView

            with LiveView(store, loops, control):
                return run_workers(loops, control, handle_signals=handle_signals)
    finally:
        control.end_shared_pause()
        for name, ws in zip(names, workspaces, strict=True):
            try:
                ws.finish()
            except Exception as exc:  # left for the next start's repair
                control.log(f"[{name}] could not tidy its workspace: {exc}")
        if worktrees is not None:
            worktrees.close()


def _workspaces(
    names: list[str],
    repo: Path,
    mode: Mode,
    allow_dirty: bool,
    target: str | None,
    remote: str | None,
    push_branches: bool,
    control: RunControl,
    lock_timeout: float = 900.0,
) -> tuple[list[Workspace], Any]:
    from ralph.store import ensure_ralph_dir  # workspaces only do git: .ralph/ is made here

    if mode == "checkout":
        from ralph.workspace.checkout import CheckoutWorkspace

        if len(names) != 1:
            raise errors.UsageError("one checkout holds one worker; use worktrees for more")
        from ralph.review.desk import finish_checkout_move  # lazy: start-up

        finish_checkout_move(repo, lock_timeout)  # a killed approve's files, before the checks
        ralph_dir = ensure_ralph_dir(repo)
        return [
            CheckoutWorkspace(
                repo, ralph_dir=ralph_dir, allow_dirty=allow_dirty, lock_timeout=lock_timeout
            )
        ], None
    from ralph.workspace.worktree import Worktrees, main_root

    ralph_dir = ensure_ralph_dir(main_root(repo))
    if remote is None:
        worktrees = Worktrees(repo, ralph_dir=ralph_dir, target=target, lock_timeout=lock_timeout)
    else:
        from ralph.workspace.remote import RemoteWorktrees

        worktrees = RemoteWorktrees(
            repo,
            remote,
            ralph_dir=ralph_dir,
            target=target,
            push_branches=push_branches,
            lock_timeout=lock_timeout,
        )
    worktrees.log = control.log
    worktrees.start(names)
    spaces: list[Workspace] = [
        worktrees.workspace(
            name, wait=control.wait, log=lambda line, n=name: control.log(f"[{n}] {line}")
        )
        for name in names
    ]
    return spaces, worktrees


def run_workers(
    workers: list[WorkerLoop], control: RunControl, *, handle_signals: bool = True
) -> RunSummary:
    """Run the workers in threads until they finish; SIGTERM/SIGINT/SIGHUP stop them.

    The handlers only record the signal; this thread does the work: the first signal takes no
    new task and gives running agents `grace` seconds, a second one kills them now. SIGHUP is
    a stop too: agents run in their own sessions and would outlive a closed terminal. The
    previous handlers are restored afterwards.
    """
    received: list[int] = []
    previous: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, lambda n, _f: received.append(n))
    crashes: list[BaseException] = []

    def target(worker: WorkerLoop) -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced in the main thread after the others stop
            crashes.append(exc)
            control.stop_all(f"{worker.opt.worker} crashed: {exc}", grace=0)

    threads = [threading.Thread(target=target, args=(w,), name=w.opt.worker) for w in workers]
    grace = workers[0].opt.grace if workers else 0.0
    interrupted = 0
    busy_at_stop = False
    try:
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.1)
            while received:
                name = signal.Signals(received.pop()).name
                interrupted += 1
                if interrupted == 1:
                    busy_at_stop = any(w.current for w in workers)
                    control.stop_all(
                        f"{name}: taking no new task; running agents get {grace:g}s to finish",
                        grace=grace,
                    )
                else:
                    control.stop_all(f"{name} again: killing running agents", grace=0)
    except BaseException:
        # This thread handles the signals: if it fails, nothing else would ever stop the
        # workers, and a worker thread waiting to land keeps the process alive for good.
        control.stop_all("the run's main thread failed; stopping every worker", grace=0)
        for t in threads:
            t.join()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if crashes:
        raise crashes[0]
    summary = control.summary
    summary.wall_s = time.time() - control.started_at
    summary.stop_reason = control.reason
    error = control.error
    if error is None and interrupted and busy_at_stop:
        error = errors.RunInterruptedError()
    if error is None and summary.failed:
        error = errors.TasksFailedError(
            f"{summary.failed} task(s) ended failed",
            hint="`ralph list --status failed` shows them; `ralph show ID` says why",
        )
        control.error = error
    summary.exit_code = error.exit_code if error else 0
    return summary
