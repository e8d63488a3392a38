"""One worker's RALPH loop: claim the next task, run a fresh agent on it, commit, mark it done.

Workers share a `RunControl` (stop, pause, global caps), so N of them can run in one process;
each works in a `Workspace` (for now the repository itself). The claim is held by a lease renewer
for the whole task; losing it kills the agent and commits nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ralph.agents.base import Agent, AgentReport, AgentSignal
from ralph.errors import AgentAuthError, BreakerOpenError, LeaseLostError, RalphError
from ralph.lease import LeaseRenewer
from ralph.models import Claim, Task
from ralph.pool import RunControl, TaskOutcome, backoff_delay
from ralph.process import AgentProcess, ProcessResult
from ralph.prompts import Template, commit_context, prompt_context
from ralph.store.base import SQLStore
from ralph.vcs import Workspace

NOTE_CHARS = 2000


@dataclass
class RunOptions:
    """Everything one worker needs, resolved from config and flags."""

    agent: Agent
    agent_name: str
    worker: str
    prompt: Template
    commit_message: Template
    capabilities: list[str] = field(default_factory=list)
    lease: float = 1800.0
    max_attempts: int = 3
    task_timeout: float | None = 3600.0
    idle_timeout: float | None = 900.0
    grace: float = 30.0
    kill_grace: float = 5.0
    backoff: float = 30.0
    backoff_max: float = 1800.0
    rate_limit_pause: float = 60.0
    breaker: int = 5
    no_changes: str = "done"
    verify: list[list[str]] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    once: bool = False
    watch: bool = False
    poll: float = 2.0
    max_tasks: int | None = None
    max_cost: float | None = None
    max_time: float | None = None


class WorkerLoop:
    """Claims and runs tasks until the queue drains, a cap is reached or the run stops."""

    def __init__(
        self, store: SQLStore, workspace: Workspace, options: RunOptions, control: RunControl
    ):
        self.store, self.workspace, self.opt, self.control = store, workspace, options, control
        self.ralph_dir = workspace.root / ".ralph"
        self.failures_in_a_row = 0
        self.rate_limits_in_a_row = 0
        self.worker_id: str | None = None
        self.current: str | None = None

    def log(self, line: str) -> None:
        self.control.log(f"[{self.opt.worker}] {line}")

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        heartbeat = self._start_heartbeat()
        try:
            while self.control.wait_while_paused() and self.control.take_task():
                claim = self.store.claim_next(
                    self.opt.worker, self.opt.capabilities, self.opt.lease
                )
                if claim is None:
                    self.control.give_back()
                    if self.opt.once or not self._wait_for_work():
                        break
                    continue
                self.run_task(claim)
                if self.opt.once:
                    break
        finally:
            heartbeat.set()
            if self.worker_id:
                self.store.stop_worker(self.worker_id, stopped=True)

    def _wait_for_work(self) -> bool:
        """Sleep until a task may be ready; False when nothing is left (and not --watch)."""
        at = self.store.next_ready_at(self.opt.capabilities)
        if at is None and not self.opt.watch:
            return False
        delay = self.opt.poll if at is None else min(self.opt.poll, max(0.05, at - time.time()))
        return self.control.wait(delay)

    def _start_heartbeat(self) -> threading.Event:
        done = threading.Event()
        worker = self.store.register_worker(
            self.opt.worker,
            capabilities=self.opt.capabilities,
            pid=os.getpid(),
            host=os.uname().nodename,
        )
        self.worker_id = worker.id

        def beat() -> None:
            while not done.wait(worker.heartbeat_interval):
                try:
                    status = "busy" if self.current else "idle"
                    if self.store.heartbeat(worker.id, status=status, current_task=self.current):
                        self.control.stop_all(f"{self.opt.worker} was asked to stop")
                except Exception as exc:  # a missed heartbeat is not worth stopping for
                    self.log(f"heartbeat failed: {exc}")

        threading.Thread(target=beat, name=f"heartbeat-{self.opt.worker}", daemon=True).start()
        return done

    # -- one task ---------------------------------------------------------------------------
    def run_task(self, claim: Claim) -> None:
        task = self.store.get(claim.task_id)
        self.current = task.id
        started = time.monotonic()
        run_no = len(self.store.attempts(task.id)) + 1
        run_dir = self.ralph_dir / "runs" / task.id / str(run_no)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log(f"claimed {task.id}: {task.title}")
        try:
            cwd = self.workspace.prepare(task)
            prompt = self.opt.prompt.render(self._context(task, cwd))
        except RalphError as exc:
            self._release(claim, count=False, note=None)
            self.control.stop_all(exc.line(), error=exc)
            self.current = None
            return
        (run_dir / "prompt.md").write_text(prompt)
        attempt = self.store.start_attempt(
            task.id,
            attempt=task.attempts + 1,
            worker=self.opt.worker,
            agent=self.opt.agent_name,
            run_dir=str(run_dir),
        )
        proc = AgentProcess(
            self.opt.agent.argv(prompt, run_dir / "prompt.md"),
            cwd=cwd,
            out_dir=run_dir,
            env=self._env(task, run_dir),
            stdin=self.opt.agent.stdin(prompt),
            parser=self.opt.agent.new_parser(),
            timeout=self.opt.task_timeout,
            idle_timeout=self.opt.idle_timeout,
            kill_grace=self.opt.kill_grace,
            on_signal=self._on_signal,
        )
        result: ProcessResult | None = None
        outcome, note, sha = "internal_error", "ralph failed while running the task", None
        self.control.track(proc)
        try:
            with LeaseRenewer(
                self.store, claim, on_lost=lambda why: proc.cancel("lease_lost")
            ) as lease:
                result = proc.run()
                self.control.untrack(proc)
                outcome, note = self._classify(result, proc.parser.report)
                if outcome == "success":
                    outcome, note = self._verify(task, cwd, run_dir)
                if outcome == "success":
                    outcome, note, sha = self._commit(
                        task, claim, lease, run_dir, proc.parser.report
                    )
        finally:
            self.control.untrack(proc)
            if outcome not in ("success", "no_changes"):
                self._discard(task, run_dir)
            report = proc.parser.report
            self.store.finish_attempt(
                attempt.id,
                outcome=outcome,
                exit_code=result.exit_code if result else None,
                cost_usd=report.cost_usd,
                input_tokens=report.input_tokens,
                output_tokens=report.output_tokens,
                session_id=report.session_id,
                summary=note,
                counted=outcome not in _UNCOUNTED,
            )
            duration = time.monotonic() - started
            kind = self._settle(task, claim, outcome, note, sha)
            record = TaskOutcome(task.id, outcome, sha, report.cost_usd, round(duration, 3), note)
            self.control.record(record, kind)
            self._write_result(run_dir, record, result, report)
            self.current = None
        cost = f", ${report.cost_usd:.4f}" if report.cost_usd is not None else ""
        what = f"commit {sha[:10]}" if sha else outcome
        self.log(
            f"{kind} {task.id} ({what}{cost}, {duration:.1f}s)"
            + (f": {note.splitlines()[0][:120]}" if note and kind != "done" else "")
        )

    def _context(self, task: Task, cwd: Path) -> dict[str, Any]:
        parent = self.store.get(task.parent) if task.parent else None
        blockers = [
            {"id": b.id, "title": b.title, "status": b.status}
            for b in (self.store.get(i) for i in task.blocked_by)
        ]
        previous = task.last_error if task.attempts else None
        return prompt_context(
            task,
            attempt=task.attempts + 1,
            previous_failure=previous,
            worker=self.opt.worker,
            repo=cwd,
            agent=self.opt.agent_name,
            parent=parent,
            blockers=blockers,
            variables=self.opt.variables,
        )

    def _env(self, task: Task, run_dir: Path) -> dict[str, str]:
        env = {**os.environ, **self.opt.agent.env()}
        env.update(
            RALPH_TASK_ID=task.id,
            RALPH_WORKER=self.opt.worker,
            RALPH_DB=str(getattr(self.store, "url", "")),
            RALPH_RUN_DIR=str(run_dir),
        )
        return env

    def _on_signal(self, sig: AgentSignal) -> None:
        """Runs on a reader thread the moment the parser sees an auth failure or a rate limit."""
        if sig.kind == "auth_failed":
            error = AgentAuthError(
                f"agent {self.opt.agent_name!r} could not authenticate: {sig.message}",
                hint="log the agent in (or fix its API key) and run again; no attempt was counted",
            )
            self.control.stop_all(error.message, error=error, grace=0)
        else:
            self.rate_limits_in_a_row += 1
            until = sig.reset_at or time.time() + (
                sig.retry_after
                or backoff_delay(
                    self.rate_limits_in_a_row, self.opt.rate_limit_pause, self.opt.backoff_max
                )
            )
            self.control.pause_until(until, f"rate limited: {sig.message}")

    def _classify(self, result: ProcessResult, report: AgentReport) -> tuple[str, str | None]:
        if result.signal is not None:
            return (
                "auth_failed" if result.signal.kind == "auth_failed" else "rate_limited",
                result.signal.message,
            )
        if result.cancel_reason == "lease_lost":
            return "lease_lost", "the lease was lost while the agent worked; agent killed"
        if result.ending == "cancelled":  # an agent that finished within the grace period counts
            return "interrupted", "the run was stopped while the agent worked"
        if result.ending in ("timeout", "idle_timeout"):
            limit = self.opt.task_timeout if result.ending == "timeout" else self.opt.idle_timeout
            what = "ran longer than" if result.ending == "timeout" else "printed nothing for"
            return result.ending, _note(f"the agent {what} {limit:g}s and was killed", result)
        if result.exit_code != 0:
            return "agent_error", _note(f"the agent exited with code {result.exit_code}", result)
        if report.is_error:
            return "agent_error", _note(
                f"the agent reported an error: {(report.result_text or '').strip()[:500]}", result
            )
        self.rate_limits_in_a_row = 0
        return "success", None

    def _verify(self, task: Task, cwd: Path, run_dir: Path) -> tuple[str, str | None]:
        for n, argv in enumerate(self.opt.verify, 1):
            proc = AgentProcess(
                argv,
                cwd=cwd,
                out_dir=run_dir,
                stdin=None,
                env=self._env(task, run_dir),
                timeout=self.opt.task_timeout,
                kill_grace=self.opt.kill_grace,
                names=(f"verify-{n}.stdout", f"verify-{n}.stderr"),
            )
            self.control.track(proc)
            try:
                result = proc.run()
            finally:
                self.control.untrack(proc)
            if result.cancel_reason is not None:
                return "interrupted", "the run was stopped during verification"
            if not result.ok:
                shown = " ".join(argv)
                return "verify_failed", _note(
                    f"verify command `{shown}` failed (exit {result.exit_code})", result
                )
        return "success", None

    def _commit(
        self, task: Task, claim: Claim, lease: LeaseRenewer, run_dir: Path, report: AgentReport
    ) -> tuple[str, str | None, str | None]:
        import git

        changes = self.workspace.changes()
        try:
            lease.check()  # the token must still be ours right before anything is committed
        except LeaseLostError as exc:
            return "lease_lost", exc.message, None
        if not changes:
            if self.opt.no_changes == "fail":
                return "no_changes_failed", "the agent finished without changing any file", None
            return "no_changes", "the agent finished without changing any file", None
        message = self.opt.commit_message.render(
            commit_context(
                task,
                agent=self.opt.agent_name,
                worker=self.opt.worker,
                cost=report.cost_usd,
                variables=self.opt.variables,
            )
        )
        from ralph.worktrees import IntegrationError

        try:
            sha = self.workspace.commit(task, changes, message)
            sha = self.workspace.integrate(task, sha) or sha  # a merge rebases: the new sha
        except IntegrationError as exc:  # merge conflict (retried with a note), lease lost, stop
            return exc.outcome, exc.note, None
        except git.GitCommandError as exc:
            return "commit_failed", f"git commit failed: {str(exc)[-NOTE_CHARS:]}", None
        return "success", None, sha

    def _discard(self, task: Task, run_dir: Path) -> None:
        try:
            changes = self.workspace.changes()
            if changes:
                self.workspace.discard(task, changes, keep=run_dir / "changes.patch")
        except Exception as exc:  # never let cleanup hide the real outcome
            self.log(f"could not discard the changes of {task.id}: {exc}")

    def _settle(
        self, task: Task, claim: Claim, outcome: str, note: str | None, sha: str | None
    ) -> str:
        """Tell the store how the task ended; returns the summary bucket it belongs to."""
        if outcome == "lease_lost":
            return "skipped"  # someone else may hold the task now: leave it alone
        if outcome in ("success", "no_changes"):
            try:
                self.store.done(task.id, token=claim.token, worker=claim.worker)
            except LeaseLostError as exc:
                self.log(f"{task.id}: {exc.message}; taking its commit back")
                if sha:
                    self.workspace.undo(task, sha)
                self._discard(task, self.ralph_dir / "runs" / task.id)
                return "skipped"
            self.failures_in_a_row = 0
            return "done"
        if outcome in _UNCOUNTED:
            self._release(claim, count=False, note=None)
            return "skipped"
        # A merge conflict is not the agent's failure: the target moved under it. It still
        # counts as an attempt (so two tasks that keep colliding cannot loop forever), but it is
        # retried at once, from the new target head, and does not feed the breaker.
        conflict = outcome == "merge_conflict"
        if not conflict:
            self.failures_in_a_row += 1
        attempts = task.attempts + 1
        try:
            if attempts >= self.opt.max_attempts:
                self.store.fail(
                    task.id,
                    claim.worker,
                    claim.token,
                    reason=f"failed {attempts} times; last: {note}",
                )
                kind = "failed"
            else:
                delay = (
                    0.0
                    if conflict
                    else backoff_delay(attempts, self.opt.backoff, self.opt.backoff_max)
                )
                self.store.release(
                    task.id,
                    claim.worker,
                    claim.token,
                    retry_in=delay,
                    count_attempt=True,
                    note=note,
                )
                kind = "retried"
        except LeaseLostError:
            return "skipped"
        if self.failures_in_a_row >= self.opt.breaker:
            error = BreakerOpenError(
                f"{self.failures_in_a_row} attempts failed in a row; stopping",
                hint=f"look at .ralph/runs/{task.id}/ and `ralph show {task.id}`",
            )
            self.control.stop_all(error.message, error=error)
        return kind

    def _release(self, claim: Claim, *, count: bool, note: str | None) -> None:
        with contextlib.suppress(LeaseLostError):
            self.store.release(
                claim.task_id, claim.worker, claim.token, count_attempt=count, note=note
            )

    def _write_result(
        self, run_dir: Path, record: TaskOutcome, result: ProcessResult | None, report: AgentReport
    ) -> None:
        data = {
            **asdict(record),
            "exit_code": result.exit_code if result else None,
            "ending": result.ending if result else None,
            "output_bytes": result.bytes_out if result else 0,
            "input_tokens": report.input_tokens,
            "output_tokens": report.output_tokens,
            "session_id": report.session_id,
            "num_turns": report.num_turns,
        }
        (run_dir / "result.json").write_text(json.dumps(data, indent=2) + "\n")


_UNCOUNTED = {"auth_failed", "rate_limited", "lease_lost", "interrupted", "internal_error"}


def _note(head: str, result: ProcessResult) -> str:
    tail = result.tail()
    text = f"{head}\n{tail}" if tail else head
    return text[-NOTE_CHARS:]


def preview(store: SQLStore, workspace: Workspace, options: RunOptions) -> list[dict[str, Any]]:
    """--dry-run: the prompt and argv each ready task would get; claims and launches nothing."""
    limit = 1 if options.once else options.max_tasks
    shown = []
    for task in store.ready(limit=limit, capabilities=options.capabilities):
        loop = WorkerLoop(store, workspace, options, RunControl())
        task = store.get(task.id)
        cwd = workspace.root
        prompt = options.prompt.render(loop._context(task, cwd))
        shown.append(
            {
                "task": task.id,
                "title": task.title,
                "argv": options.agent.argv(prompt, cwd / ".ralph" / "runs" / task.id / "prompt.md"),
                "stdin": options.agent.stdin(prompt) is not None,
                "prompt": prompt,
            }
        )
    return shown
