"""One worker's RALPH loop: claim the next task, run a fresh agent on it, land its commit, and
end the task with one store call.

The order that makes a task done exactly once:
1. claim (fencing token) → 2. if the task's commit already landed (`refs/ralph/tasks/<id>`, a
crash after the landing), complete it without launching the agent → 3. clean start at the base →
4. agent (lease renewed; lost lease kills it) → 5. one tree from whatever it left → 6. land:
under the merge lock, fenced, the target moves together with the task's ref in one ref
transaction (git refuses a second one) → 7. `store.finish(done, commit)` checked against the
token. A crash between 6 and 7 is found at step 2 by the next holder (or by the run-start
reconcile). So: a task is done if and only if exactly one commit of it is on the target, or it
ended with no changes.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from git.exc import GitCommandError

from ralph import reaper, resolve
from ralph.agents.base import AgentReport, AgentSignal
from ralph.control import RunControl, TaskOutcome
from ralph.errors import (
    BreakerOpenError,
    LeaseLostError,
    RalphError,
    WorkspaceError,
)
from ralph.fallback import Unavailable, settle_unavailable
from ralph.heartbeat import HOST, Heartbeat
from ralph.launch import agent_env, agent_process
from ralph.lease import LeaseRenewer
from ralph.models import AttemptEnd, Claim, Task
from ralph.ops.show import write_snapshot
from ralph.options import RunOptions, Workspace, heartbeat_interval
from ralph.outcomes import LANDED, NOT_TRIED, UNCOUNTED, classify, landing_failure
from ralph.pauses import StorePause, on_agent_signal
from ralph.preview import task_context
from ralph.process import AgentProcess, ProcessResult
from ralph.prompts import commit_context, commit_message
from ralph.rundir import remember, write_result
from ralph.settle import Tally
from ralph.store.base import SQLStore
from ralph.verify import run_verify
from ralph.workspace.base import Collected, Reverify
from ralph.workspace.git import RefRefusedError, attempt_ref, disk_full

__all__ = ["HOST", "RunOptions", "WorkerLoop", "Workspace", "heartbeat_interval"]


class WorkerLoop:
    """Claims and runs tasks until the queue drains, a cap is reached or the run stops."""

    def __init__(
        self, store: SQLStore, workspace: Workspace, options: RunOptions, control: RunControl
    ):
        self.store, self.workspace, self.opt, self.control = store, workspace, options, control
        self.ralph_dir = workspace.root / ".ralph"
        self.tally = Tally(options)  # failures, rate limits and remote failures in a row
        self.current: str | None = None
        self.heartbeat = Heartbeat(store, options, self.log, lambda: self.current)
        self.store_pause = StorePause(store, control, self.log)  # `ralph pause`, the web page
        self._said_waiting: float | None = None
        self.confined: Any = None  # the running attempt's ralph.sandbox.confine.Confined
        self.for_review: Any = None  # review mode: the ralph.review.gate.ReviewCommit made

    def log(self, line: str) -> None:
        self.control.log(f"[{self.opt.worker}] {line}")

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        self.heartbeat.start()
        try:
            while self.control.wait_while_paused() and self._not_paused_by_store():
                if self.heartbeat.asked_to_stop or not self.control.take_task():
                    break
                seen = self.control.wakes()  # before the look: a task ending after it wakes us
                claim = self.store.claim_next(
                    self.opt.worker, self.opt.capabilities, self.opt.lease
                )
                if claim is None:
                    self.control.give_back()
                    if self.opt.once or not self._wait_for_work(seen):
                        break
                    continue
                self.run_task(claim)
                if self.opt.once:
                    break
        finally:
            self.heartbeat.stop()

    def _not_paused_by_store(self) -> bool:
        return self.store_pause.wait_out(self.opt.poll)

    def _wait_for_work(self, seen: int) -> bool:
        """Sleep until a task may be ready: its backoff's end, the poll interval (another
        process's tasks), or a task of this run ending (wake-up count past `seen`); False when
        nothing is left (and not --watch)."""
        at = self.store.next_ready_at(self.opt.capabilities)
        if at is None and not self.opt.watch:
            return False
        if at is not None and at != self._said_waiting and at - time.time() > 5:
            self._said_waiting = at  # a line now and then, so a log reader sees why it waits
            when = time.strftime("%H:%M:%S", time.localtime(at))
            self.log(
                f"nothing ready; waiting up to {at - time.time():.0f} s (until {when}) for a "
                "retry's backoff or another worker's task"
            )
        delay = self.opt.poll if at is None else min(self.opt.poll, max(0.05, at - time.time()))
        return self.control.wait_for_work(delay, seen)

    # -- one task ---------------------------------------------------------------------------
    def run_task(self, claim: Claim) -> None:
        task = self.store.get(claim.task_id)
        self.current = task.id
        self.heartbeat.beat()  # `worker list` shows the task now, not at the next heartbeat
        started = time.monotonic()
        self.log(f"claimed {task.id}: {task.title}")
        try:
            landed = self._before_launch(task)
        except WorkspaceError as exc:  # the remote did not answer: this task later, run goes on
            self.tally.remote_failures += 1
            self._settle_without_attempt(task, claim, "remote_failed", exc.line())
            return
        except RalphError as exc:
            self._settle_without_attempt(task, claim, "internal_error", exc.line())
            self.control.stop_all(exc.line(), error=exc)
            return
        self.tally.remote_failures = 0
        if landed:
            self._settle_without_attempt(task, claim, "reconciled", None, landed)
            return
        if self.control.pool is not None:  # which agent runs it (ralph.fallback)
            try:
                self.opt = self.control.pool.options_for(task, self.opt)
            except Unavailable as exc:
                settle_unavailable(self, task, claim, exc)
                return
        earlier = self.store.attempts(task.id)
        run_no = len(earlier) + 1
        conflicts = sum(1 for a in earlier if a.outcome == "merge_conflict" and a.kind == "task")
        run_dir = self.ralph_dir / "runs" / task.id / str(run_no)
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            base = self.workspace.prepare(task.id, run_no, run_dir)
            if self.opt.sandbox is not None:  # its git view (and network gate) for this attempt
                self.confined = self.opt.sandbox.confine(self.workspace, run_dir, base, self.log)
                write_snapshot(self.store, task.id, self.confined.agent_dir)  # `ralph show`
            context = self._context(task, self.workspace.path)
            context["attempt"] += conflicts  # uncounted, but the retry must see the conflict note
            prompt = self.opt.prompt.render(context)
        except RalphError as exc:
            if self.confined is not None:
                self.confined.close()
                self.confined = None
            self._settle_without_attempt(task, claim, "internal_error", exc.line())
            self.control.stop_all(exc.line(), error=exc)
            return
        (run_dir / "prompt.md").write_text(prompt)
        (run_dir / "sandbox.txt").write_text(self.opt.policy() + "\n")  # the web page's shield
        attempt = self.store.start_attempt(
            task.id,
            attempt=task.attempts + 1,
            worker=self.opt.worker,
            agent=self.opt.agent_name,
            run_dir=str(run_dir),
            token=claim.token,
            host=HOST,
            model=self.opt.agent.model,  # the configured one; the agent's own report replaces it
        )
        proc = self._process(task, prompt, run_dir)
        result: ProcessResult | None = None
        outcome, note, sha = "internal_error", "ralph failed while running the task", None
        self.control.track(proc)
        try:
            with LeaseRenewer(
                self.store, claim, on_lost=lambda why: proc.cancel("lease_lost")
            ) as lease:
                if lost := self.store.claim_lost(claim) or lease.lost:  # taken meanwhile
                    raise LeaseLostError(f"not launched: {lost}")
                result = proc.run()
                self.control.untrack(proc)
                if self.confined is not None:  # the agent's HEAD and commits, from its git view
                    self.confined.finish(attempt_ref(task.id, run_no))
                    self.confined.file_followups(self.store, task.id, self.opt.settings)
                reaped = result.reaped_note()
                if reaped:
                    self.log(f"{task.id}: {reaped}")
                outcome, note = self._classify(result, proc.parser)
                if outcome == "success":
                    # Until the landing says otherwise: a git failure inside it (an exception)
                    # must leave the task open, never "success" without a commit.
                    outcome, note = "internal_error", "ralph failed while landing the commit"
                    try:
                        outcome, note, sha = self._land(
                            task, claim, base, run_no, run_dir, lease, proc
                        )
                    except Exception as exc:
                        if not disk_full(exc):
                            raise
                        outcome, note = "disk_full", f"the disk filled up while landing: {exc}"
                        self._stop_disk_full(str(exc))
        except LeaseLostError as exc:
            outcome, note = "lease_lost", exc.message
        finally:
            self.control.untrack(proc)
            if sha is None:
                self._discard(task, run_no, run_dir)
            if self.confined is not None:
                self.confined.close()
                self.confined = None
            report = proc.parser.report
            end = AttemptEnd(
                outcome=outcome,
                exit_code=result.exit_code if result else None,
                cost_usd=report.cost_usd,
                input_tokens=report.input_tokens,
                output_tokens=report.output_tokens,
                session_id=report.session_id,
                summary=note,
                counted=outcome not in UNCOUNTED and outcome != "lease_lost",
                cost_estimated=report.cost_estimated,
                model=report.model,
            )
            kind = self._settle(task, claim, attempt.id, end, sha, conflicts)
            duration = time.monotonic() - started
            record = TaskOutcome(task.id, outcome, sha, report.cost_usd, round(duration, 3), note)
            record.agent = self.opt.agent_name
            self.control.record(record, kind)
            if self.control.pool is not None:  # its max_cost (ralph.fallback)
                self.control.pool.on_spent(self.opt.agent_name, report.cost_usd, self.control)
            try:
                write_result(run_dir, record, result, report, self.opt.policy())
            except OSError as exc:  # a full disk: the store has the outcome
                self.log(f"{task.id}: could not write {run_dir / 'result.json'}: {exc}")
            self.current = None
        cost = f", ${report.cost_usd:.4f}" if report.cost_usd is not None else ""
        what = f"commit {sha[:10]}" if sha else outcome
        self.log(
            f"{kind} {task.id} ({what}{cost}, {duration:.1f}s)"
            + (f": {note.splitlines()[0][:120]}" if note and kind != "done" else "")
        )

    def _before_launch(self, task: Task) -> str | None:
        """End what a crashed holder left (its orphaned agent) and look for the task's landed
        commit; returns its sha when the work is already on the target."""
        self._reap_orphans()
        return self.workspace.landed(task.id)

    def _reap_orphans(self) -> None:
        """An agent outlives its SIGKILLed worker (own session) and keeps writing into the
        workspace: end every process still marked with this workspace before reusing it."""
        ended = reaper.end_orphans(str(self.workspace.path), self.opt.kill_grace)
        if ended:
            self.log(f"ended {ended} orphaned agent process(es) in {self.workspace.path}")

    def _process(self, task: Task, prompt: str, run_dir: Path) -> AgentProcess:
        env = self._env(task, run_dir)
        return agent_process(
            self.opt.agent,
            self.opt,
            prompt,
            self.workspace.path,
            run_dir,
            env,
            confined=self.confined,
            on_signal=self._on_signal,
        )

    def _land(
        self,
        task: Task,
        claim: Claim,
        base: str,
        run_no: int,
        run_dir: Path,
        lease: LeaseRenewer,
        proc: AgentProcess,
    ) -> tuple[str, str | None, str | None]:
        """Collect, verify, land. Returns (outcome, note, sha of the commit on the target)."""
        self.opt.agent.drop_scratch(self.workspace.path)  # aider's tags cache
        rewound = self.confined.rewound() if self.confined is not None else None
        if rewound:
            return "agent_error", rewound, None
        # in the task's own commit, staged with the rest
        ours = remember(self.opt.settings, self.workspace.path, run_dir, task, self.opt.worker)
        collected = self.workspace.collect(task.id, run_no, base)
        for line in collected.repairs:
            self.log(f"{task.id}: {line}")
        if collected.refused:  # a git side door, or the user's own paths touched
            return collected.refused_as, collected.refused, None
        if self.confined is not None:
            edited = self.confined.settings_edited(
                collected.tree, [c.path for c in collected.changes]
            )
            if edited:
                return "agent_error", edited, None
        if not [c for c in collected.changes if c.path not in ours]:
            lease.check()
            hidden = self.workspace.hidden_work(collected.base)
            if hidden:  # never "no changes" for work that only ignore rules hide
                return "agent_error", hidden, None
            if self.opt.no_changes == "fail":
                return "no_changes_failed", "the agent finished without changing any file", None
            return "no_changes", "the agent finished without changing any file", None
        outcome, note = self._verify(task, self.workspace.path, run_dir)
        if outcome != "success":
            return outcome, note, None
        message = self._message(task, claim, collected, proc.parser.report)
        if self.opt.settings.land.review:  # to refs/heads/ralph/review/<task>, not the target
            from ralph.review.gate import to_review

            outcome, note, self.for_review = to_review(
                self.workspace, task.id, collected, message, lease.check, bool(self.opt.verify)
            )
            return outcome, note, None
        reverify = self._reverifier(task, run_dir) if self.opt.verify else None
        try:
            landing = self.workspace.land(task.id, collected, message, lease.check, reverify)
            if landing.status == "conflict":  # an agent may resolve it (ralph/resolve.py)
                landing = resolve.after_conflict(
                    self, task, claim, run_no, run_dir, lease, collected, message, landing, reverify
                )
        except (RefRefusedError, GitCommandError, WorkspaceError) as exc:
            return *landing_failure(exc), None  # one counted attempt, never a crashed run
        return LANDED.get(landing.status, "internal_error"), landing.note or None, landing.commit

    def _message(self, task: Task, claim: Claim, collected: Collected, report: AgentReport) -> str:
        context = commit_context(
            task,
            agent=self.opt.agent_name,
            worker=self.opt.worker,
            cost=report.cost_usd,
            variables=self.opt.variables,
            estimated=report.cost_estimated,
        )
        return commit_message(
            self.opt.commit_message, context, task.id, claim.token, collected.subjects
        )

    def _reverifier(self, task: Task, run_dir: Path) -> Reverify:
        def reverify(path: Path) -> str | None:
            outcome, note = self._verify(task, path, run_dir, again=True)
            return None if outcome == "success" else (note or outcome)

        return reverify

    def _context(self, task: Task, cwd: Path) -> dict[str, Any]:
        return task_context(self.store, task, self.opt, cwd)

    def _env(self, task: Task, run_dir: Path) -> dict[str, str]:
        return agent_env(self.opt.agent, self.opt, self.store, self.workspace, task, run_dir)

    def _on_signal(self, sig: AgentSignal) -> None:
        on_agent_signal(sig, self.opt, self.control, self.tally)

    def _classify(self, result: ProcessResult, parser: Any) -> tuple[str, str | None]:
        outcome, note, late = classify(result, parser, self.opt.task_timeout, self.opt.idle_timeout)
        if late is not None:  # read from how the run failed, after the exit
            self._on_signal(late)
        if outcome == "success":
            self.tally.rate_limits_in_a_row = 0
        return outcome, note

    def _verify(
        self, task: Task, cwd: Path, run_dir: Path, *, again: bool = False
    ) -> tuple[str, str | None]:
        return run_verify(
            self.opt.verify,
            cwd=cwd,
            run_dir=run_dir,
            env=self._env(task, run_dir),
            control=self.control,
            confined=self.confined,
            timeout=self.opt.task_timeout,
            kill_grace=self.opt.kill_grace,
            again=again,
        )

    def _discard(self, task: Task, run_no: int, run_dir: Path) -> None:
        try:
            kept = self.workspace.discard(task.id, run_no, run_dir / "changes.patch")
        except Exception as exc:  # never let cleanup hide the real outcome
            self.log(f"could not put back the workspace after {task.id}: {exc}")
            if disk_full(exc):  # its marker stays: the next run saves and cleans it
                self._stop_disk_full(str(exc))
            return
        for item in kept:
            self.log(f"{task.id}: kept the attempt's work: {item}")

    def _stop_disk_full(self, why: str) -> None:
        error = WorkspaceError(
            f"the disk is full ({why.splitlines()[0][:200]})",
            hint="free some space and run again: the attempt's files are saved and cleaned then",
        )
        self.control.stop_all(error.message, error=error)

    # -- ending a task ------------------------------------------------------------------------
    def _settle_without_attempt(
        self, task: Task, claim: Claim, outcome: str, note: str | None, sha: str | None = None
    ) -> None:
        end = AttemptEnd(outcome=outcome, summary=note, counted=False)
        kind = self._settle(task, claim, None, end, sha, 0)
        self.control.record(TaskOutcome(task.id, outcome, sha, None, 0.0, note, False), kind)
        if outcome == "reconciled":
            self.log(f"{kind} {task.id}: its commit {sha and sha[:10]} had already landed")
        self.current = None

    def _settle(
        self,
        task: Task,
        claim: Claim,
        attempt_id: int | None,
        end: AttemptEnd,
        sha: str | None,
        conflicts: int,
    ) -> str:
        """End the task in one store call; returns the summary bucket it belongs to."""
        outcome, note = end.outcome, end.summary
        if outcome in NOT_TRIED:
            self.control.give_back()
        if outcome == "lease_lost":  # someone else may hold the task now: leave it alone
            if attempt_id is not None:
                self.store.finish_attempt(attempt_id, **asdict(end))
            return "skipped"
        judged = self.tally.judge(task, outcome, note, conflicts)
        if judged.counted is not None:
            end.counted = judged.counted
        verdict, kind, retry_in, note = judged.verdict, judged.kind, judged.retry_in, judged.note
        finish: Any = self.store.finish
        if verdict == "review":  # store.send_to_review, called as finish is
            from ralph.review.gate import finisher  # lazy: start-up

            finish = finisher(self.store, self.for_review, self.control.pulls)
            self.for_review = None
        try:
            finish(
                task.id,
                worker=claim.worker,
                token=claim.token,
                verdict=verdict,
                attempt_id=attempt_id,
                end=end,
                commit=sha,
                retry_in=retry_in,
                note=note,
            )
        except LeaseLostError as exc:
            if attempt_id is not None:
                self.store.finish_attempt(attempt_id, **asdict(end))
            if sha:
                self.log(
                    f"{task.id}: its commit {sha[:10]} landed but {exc.message}; "
                    "the task's next holder completes it without running the agent"
                )
            return "skipped"
        if self.tally.breaker_open():
            error = BreakerOpenError(
                f"{self.tally.failures_in_a_row} attempts failed in a row; stopping",
                hint=f"look at .ralph/runs/{task.id}/ and `ralph show {task.id}`",
            )
            self.control.stop_all(error.message, error=error)
        return kind
