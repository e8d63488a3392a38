"""What the workers of one run share: stop and pause, global caps, the running agents and the
summary. The runner (ralph/runner.py) owns the threads and the signals.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import tenacity

from ralph.errors import AgentAuthError, BreakerOpenError, RalphError
from ralph.notify import Notifier
from ralph.process import AgentProcess


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry number `attempt` (1-based): exponential, from tenacity's strategy."""

    state = tenacity.RetryCallState(None, None, (), {})
    state.attempt_number = max(1, attempt)
    return float(tenacity.wait_exponential(multiplier=base, max=cap)(state))


_closed: set[int] = set()


def console_line(line: str, stream: Any = None) -> None:
    """Print one progress line (stderr by default). Once the stream's reader is gone
    (`ralph run 2>&1 | head -1`) the stream is pointed at /dev/null and the run goes on: a
    closed pipe must not kill a worker thread holding a claim, nor the thread that handles
    SIGTERM. The attempt's files and the events table keep the record."""
    stream = stream or sys.stderr
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        fd = -1
    if fd in _closed:
        return
    try:
        print(line, file=stream, flush=True)
    except (OSError, ValueError):  # BrokenPipeError, or a stream already closed
        _closed.add(fd)
        if fd >= 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)  # what is still buffered, and Python's flush at exit, go nowhere
            os.close(devnull)


@dataclass
class TaskOutcome:
    task: str
    outcome: str
    commit: str | None = None
    cost_usd: float | None = None
    duration_s: float = 0.0
    note: str | None = None
    launched: bool = True  # an agent ran (false: reconciled, or ended before the launch)
    agent: str | None = None  # the agent that ran it (fallback agents: which of the list)


@dataclass
class RunSummary:
    """What a run did; `--json` prints it."""

    done: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0
    review: int = 0  # tasks whose commit waits for `ralph approve` ([land] mode = "review")
    commits: int = 0
    launches: int = 0  # agents started, conflict re-runs included
    conflicts: int = 0  # launches whose work met a merge conflict (not counted as attempts)
    resolutions: int = 0  # of the launches, conflict resolutions by an agent (ralph.resolve)
    cost_usd: float = 0.0
    cost_known: bool = False
    unknown_cost: int = 0  # launches that reported no cost: not in cost_usd, never as $0
    wall_s: float = 0.0
    exit_code: int = 0
    stop_reason: str | None = None
    agents: dict[str, int] = field(default_factory=dict)  # launches by agent
    tasks: list[TaskOutcome] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        data["wall_s"] = round(self.wall_s, 3)
        return data


class RunControl:
    """Shared by every worker of a run: stop, pause, caps and the running agents."""

    def __init__(
        self,
        *,
        max_tasks: int | None = None,
        max_cost: float | None = None,
        max_time: float | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.max_tasks, self.max_cost = max_tasks, max_cost
        self.deadline = time.time() + max_time if max_time else None
        self.started_at = time.time()
        self.log = log or console_line
        self.stopping = threading.Event()
        self.reason: str | None = None
        self.error: RalphError | None = None
        self.cost = 0.0
        self.taken = 0
        self.summary = RunSummary()
        self._paused_until = 0.0
        self._pause_why: tuple[str, str | None] = ("", None)  # (why, which worker hit it)
        self._pause_told = 0.0  # the end of the last pause a notification was sent for
        self._shared: tuple[Any, str, list[str]] | None = None  # (store, run key, workers)
        self._shared_until = 0.0  # the pause's end as the store has it (0: no row)
        self._share_lock = threading.Lock()  # one put/delete at a time, in order
        self._cancel_at: float | None = None
        self._lock = threading.Lock()
        # Bumped whenever the queue may have changed (a task of this run ended, the run stops):
        # idle workers wait on it instead of sleeping out their poll interval.
        self._wakes = 0
        self._woken = threading.Condition()
        self._procs: set[AgentProcess] = set()
        self._last: dict[str, str] = {}
        self.notifier: Notifier | None = None  # ralph.notify, set by the CLI from [notify]
        self.report_path: str | None = None  # [report] write = true: the run's report file
        self.pool: Any = None  # ralph.fallback.AgentPool: which agent each attempt gets
        self.pulls: Any = None  # ralph.review.pulls.PullRequests: [land] mode = "pr"

    def notify(self, event: str, **data: Any) -> None:
        """Queue a notification (never blocks: see ralph.notify)."""
        if self.notifier is not None:
            self.notifier.emit(event, **data)

    def stop_all(
        self, reason: str, *, error: RalphError | None = None, grace: float | None = None
    ) -> None:
        """Take no new task anywhere; with `grace`, also end running agents after it (0: now)."""
        with self._lock:
            if self.reason is None:
                self.reason, self.error = reason, error
                self.log(f"stopping: {reason}")
                self._notify_stop(error)
            procs = list(self._procs)
            if grace is not None:
                deadline = time.monotonic() + grace
                self._cancel_at = min(deadline, self._cancel_at or deadline)
        self.stopping.set()
        self.wake()
        if grace is not None:
            for proc in procs:
                proc.cancel("interrupted", grace)

    def _notify_stop(self, error: RalphError | None) -> None:
        if isinstance(error, AgentAuthError):
            self.notify(
                "auth_stopped", agent=error.data.get("agent"), error=error.message, hint=error.hint
            )
        elif isinstance(error, BreakerOpenError):
            self.notify("breaker_tripped", error=error.message, hint=error.hint)

    def pause_until(self, ts: float, why: str, by: str | None = None) -> None:
        """Hold every worker of this run until `ts` (a rate limit, no network); `by` is the
        worker whose agent hit it. Every host sees it in the store (`share_pauses`)."""
        with self._lock:
            extended = ts > self._paused_until
            if extended:
                self._pause_why = (why, by)
                long = self.notifier and ts - time.time() >= self.notifier.settings.pause_after
                if long and self._pause_told < time.time():  # once per pause
                    self._pause_told = ts
                    self.notify("paused", reason=why, until=ts)
                self._paused_until = ts
                self.log(
                    f"pausing every worker until {time.strftime('%H:%M:%S', time.localtime(ts))}"
                    f": {why}"
                )
        if extended:
            self._share_pause()

    def share_pauses(self, store: Any, workers: list[str]) -> None:
        """Record this run's pauses in `store` (ralph.store.runpause) from now on, so `ralph
        status` and the web page on any host show them; `end_shared_pause` at the run's end."""
        run = f"{os.uname().nodename}:{os.getpid()}:{int(self.started_at)}"
        self._shared = (store, run, list(workers))

    def end_shared_pause(self) -> None:
        """The run is over: its pause, if recorded, is no longer in force."""
        with self._share_lock:
            if self._shared is not None and self._shared_until:
                self._write_pause(None)

    def _share_pause(self) -> None:
        """Bring the store's record in line with the pause in force (put, extend or delete)."""
        if self._shared is None:
            return
        with self._share_lock:
            with self._lock:
                until, (why, by) = self._paused_until, self._pause_why
            if until > time.time():
                if until != self._shared_until:
                    self._write_pause((until, why, by))
            elif self._shared_until:
                self._write_pause(None)

    def _write_pause(self, pause: tuple[float, str, str | None] | None) -> None:
        """Put or delete the record (under _share_lock). A store that cannot be reached must
        not stop a paused run: the pause holds in this process all the same."""
        assert self._shared is not None
        store, run, workers = self._shared
        try:
            if pause is None:
                store.end_run_pause(run)
                self._shared_until = 0.0
            else:
                until, why, by = pause
                from ralph.hostid import HOST as host  # as its workers record it

                store.share_run_pause(
                    run, until=until, reason=why, by=by, host=host, workers=workers
                )
                self._shared_until = until
        except Exception as exc:
            self.log(f"could not record the pause in the store: {exc}")

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds` (never past --max-time); False if the run is stopping."""
        if self.deadline is not None:
            seconds = min(seconds, max(0.0, self.deadline - time.time()))
        return not self.stopping.wait(max(0.0, seconds))

    def wakes(self) -> int:
        """The wake-up count now: read it before looking at the queue, wait with it after."""
        return self._wakes

    def wake(self) -> None:
        """A task ended (done, failed, back in the queue): idle workers look at the queue now,
        whose tasks may have become ready, or whose last task is gone."""
        with self._woken:
            self._wakes += 1
            self._woken.notify_all()

    def wait_for_work(self, seconds: float, seen: int) -> bool:
        """Sleep up to `seconds` (never past --max-time), or until a wake-up after the count
        `seen` (one that came meanwhile returns at once); False if the run is stopping."""
        if self.deadline is not None:
            seconds = min(seconds, max(0.0, self.deadline - time.time()))
        end = time.monotonic() + max(0.0, seconds)
        with self._woken:
            while self._wakes == seen and not self.stopping.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._woken.wait(left)
        return not self.stopping.is_set()

    def wait_while_paused(self) -> bool:
        while (left := self._paused_until - time.time()) > 0:
            if not self.wait(left):
                return False
        if self._shared_until:  # the pause is over: so is its record
            self._share_pause()
        return not self.stopping.is_set()

    def take_task(self) -> bool:
        """Reserve one task under the caps; stops the run cleanly once a cap is reached."""
        with self._lock:
            if self.max_tasks is not None and self.taken >= self.max_tasks:
                cap = f"--max-tasks {self.max_tasks} reached"
            elif self.max_cost is not None and self.cost >= self.max_cost:
                cap = f"--max-cost ${self.max_cost:.2f} reached (spent ${self.cost:.4f})"
            elif self.deadline is not None and time.time() >= self.deadline:
                cap = "--max-time reached"
            else:
                self.taken += 1
                return True
        if cap.startswith("--max-cost") and self.reason is None:
            self.notify("budget_reached", reason=cap, spent_usd=round(self.cost, 6))
        self.stop_all(cap)
        return False

    def give_back(self) -> None:
        with self._lock:
            self.taken -= 1

    def record(self, outcome: TaskOutcome, kind: str) -> None:
        """Count a task's outcome; each task is counted once, by how it last ended in this run
        (a task retried twice and then done is 1 done, not 2 retried and 1 done). The queue
        changed with it: idle workers are woken."""
        with self._lock:
            self.cost += outcome.cost_usd or 0.0
            s = self.summary
            s.cost_usd = self.cost
            s.cost_known = s.cost_known or outcome.cost_usd is not None
            s.tasks.append(outcome)
            self._last[outcome.task] = kind
            for bucket in ("done", "failed", "retried", "skipped", "review"):
                setattr(s, bucket, sum(1 for k in self._last.values() if k == bucket))
            s.commits += outcome.outcome == "success" and outcome.commit is not None
            s.launches += outcome.launched
            if outcome.launched and outcome.agent:
                s.agents[outcome.agent] = s.agents.get(outcome.agent, 0) + 1
            s.unknown_cost += outcome.launched and outcome.cost_usd is None
            s.conflicts += outcome.outcome == "merge_conflict"
        self.wake()
        if kind == "failed":
            self.notify("task_failed", task=outcome.task, error=outcome.note)

    def record_resolution(self, cost_usd: float | None, *, resolved: bool) -> None:
        """A conflict resolution's launch: in the launches and the cost, not a task's outcome
        (the task is recorded once, as it ends). A resolved one is also a conflict met."""
        with self._lock:
            self.cost += cost_usd or 0.0
            s = self.summary
            s.cost_usd = self.cost
            s.cost_known = s.cost_known or cost_usd is not None
            s.launches += 1
            s.resolutions += 1
            s.unknown_cost += cost_usd is None
            s.conflicts += resolved

    def swept(self, found: Any) -> None:
        """The sweeper's report (ralph.sweeper.Sweep): a dead worker's claims expired."""
        for worker, held in found.dead.items():
            self.notify("worker_lost", worker=worker, tasks=[c.task_id for c in held])

    def finished(self, summary: RunSummary) -> None:
        """The run is over: send `run_finished` and give the queue one send timeout at most."""
        if self.notifier is None:
            return
        self.notify("run_finished", **summary.to_dict(), report=self.report_path)
        self.notifier.close()

    def track(self, proc: AgentProcess) -> None:
        with self._lock:
            self._procs.add(proc)
            cancel_at = self._cancel_at
        if cancel_at is not None:  # the stop came between the claim and the launch
            proc.cancel("interrupted", max(0.0, cancel_at - time.monotonic()))

    def untrack(self, proc: AgentProcess) -> None:
        with self._lock:
            self._procs.discard(proc)
