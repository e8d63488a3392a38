"""Conflict resolution by an agent: a task whose commit conflicts with what landed on the target
meanwhile gets a fresh agent to resolve the merge in its workspace, instead of a full re-run.

The order, inside the task's claim and lease, right after its landing reported a conflict:
1. the task attempt's result is kept (its patch beside its output, its commit under
   `refs/ralph/attempts/<task>/<n>-result`), as a failed attempt's would be;
2. under the resolve lock (one resolution at a time per repository: two resolving at once would
   conflict with each other's result), the worktree is put at the target's current head with
   the task's commit merged in and not committed (workspace/conflict.py); a merge that now goes
   through cleanly is landed as it is, with no agent;
3. a resolution attempt (`kind = "resolve"`, never counted, no max_attempts used) runs the
   `[merge] agent` (default: the task's own) on `resolve.md.j2`, confined like any attempt;
4. its result is collected like any attempt's, refused when a conflict marker is left or none of
   the task's changes survived, verified, and landed through the same fenced landing under the
   merge lock with the task's commit message: one commit with its trailers, never a merge commit;
5. anything else (the agent failed, markers left, verify failed, the target conflicted again)
   keeps the resolution's work and returns the original conflict with a note: the task goes
   back for a full re-run as before, and `max_conflicts` still bounds the whole. One resolution
   per conflict: a resolution's own conflict is never resolved again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ralph.errors import LeaseLostError, MergeLockTimeoutError, RalphError, WorkspaceError
from ralph.launch import agent_env, agent_process
from ralph.models import AttemptEnd, Claim, Task
from ralph.outcomes import LANDED, NOTE_CHARS, landing_failure
from ralph.process import AgentProcess, ProcessResult
from ralph.prompts import INSTRUCTION_FILES, Template, find_prompt, task_dict
from ralph.workspace import conflict
from ralph.workspace.base import Collected, Landing, Reverify
from ralph.workspace.git import attempt_ref
from ralph.workspace.mergelock import MergeLock

if TYPE_CHECKING:
    from ralph.agents.base import Agent
    from ralph.lease import LeaseRenewer
    from ralph.worker import WorkerLoop

RESOLVE_TEMPLATE = "resolve.md.j2"
RESOLVE_LOCK = "resolve.lock"
KIND = "resolve"
# Landing statuses of a resolution that end it as it is; the others are a failed resolution.
FINAL = {"landed", "already", "interrupted", "push_failed"}


def load_prompt(root: Path, config_path: str | None = None) -> Template:
    """The resolution template: `[merge] prompt`, the project's `prompts/resolve.md.j2`, then
    the copy shipped inside the package."""
    return Template.from_file(find_prompt(root, None, config_path, name=RESOLVE_TEMPLATE))


def context(
    task: Task,
    *,
    repo: Path,
    worker: str,
    agent: str,
    target: str,
    head: str,
    commit: str,
    files: list[str],
    landed: list[str],
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the resolution template may use."""
    return {
        "task": task_dict(task),
        "repo": str(repo),
        "worker": worker,
        "agent": agent,
        "instructions": next((n for n in INSTRUCTION_FILES if (repo / n).is_file()), None),
        "target": target,
        "head": head[:10],
        "commit": commit[:10],
        "files": list(files),
        "landed": list(landed),
        "vars": dict(variables or {}),
    }


def sample_context(repo: Path, worker: str, agent: str) -> dict[str, Any]:
    """A full context to check a resolution template with before any agent starts."""
    task = Task(id="rl-sample00", title="Sample task", description="Sample description.")
    return context(
        task,
        repo=repo,
        worker=worker,
        agent=agent,
        target="main",
        head="0" * 40,
        commit="1" * 40,
        files=["shared.txt"],
        landed=["0000000 Sample landed task"],
    )


def after_conflict(
    loop: WorkerLoop,
    task: Task,
    claim: Claim,
    run_no: int,
    run_dir: Path,
    lease: LeaseRenewer,
    collected: Collected,
    message: str,
    found: Landing,
    reverify: Reverify | None,
) -> Landing:
    """What a conflicting landing (`found`) becomes: landed by a resolution, or `found` again
    (with a note when a resolution was tried) for the usual re-run."""
    ws: Any = loop.workspace
    if loop.opt.resolve != "agent" or not hasattr(ws, "worktrees"):
        return found  # a single checkout never conflicts: its landing says "moved"
    g = ws.git
    commit = g.commit_tree(collected.tree, [collected.base], message)
    g("update-ref", f"{attempt_ref(task.id, run_no)}-result", commit)
    g.save_patch(collected.base, run_dir / "changes.patch")
    lease.check()
    lock = MergeLock(
        ws.root / ".ralph" / RESOLVE_LOCK,
        timeout=ws.worktrees.lock_timeout,
        holder=loop.opt.worker,
    )
    try:
        with lock:
            return _resolve(loop, task, claim, lease, collected, message, found, reverify, commit)
    except MergeLockTimeoutError as exc:
        return _fallback(found, exc.line())


def _resolve(
    loop: WorkerLoop,
    task: Task,
    claim: Claim,
    lease: LeaseRenewer,
    collected: Collected,
    message: str,
    found: Landing,
    reverify: Reverify | None,
    commit: str,
) -> Landing:
    ws: Any = loop.workspace
    g = ws.git
    try:
        ws.worktrees.refresh()  # a remote's target as it is now
    except WorkspaceError as exc:
        return _fallback(found, exc.line())
    head = ws.worktrees.head()
    files = conflict.start(g, head, commit)
    if not files:  # what landed since no longer conflicts: the usual landing, no agent
        conflict.end(g)  # and the worktree back as collect left it, for a discard's patch
        g("read-tree", "-u", "--reset", collected.tree)
        g("update-ref", "--no-deref", "HEAD", collected.base)
        loop.log(f"{task.id}: its commit now merges cleanly onto {ws.target}; landing it")
        return ws.land(task.id, collected, message, lease.check, reverify)  # type: ignore[no-any-return]
    ws.base = head  # the resolution's base: its discard keeps what it changed from here
    number = len(loop.store.attempts(task.id)) + 1
    run = Resolution(loop, task, claim, lease, number, head, files)
    landed = conflict.landed_since(g, collected.base, head, files)
    return run.run(found, commit, landed, message, reverify)


def _fallback(found: Landing, why: str) -> Landing:
    note = f"{found.note}\nAn agent could not resolve it: {why}"
    return Landing("conflict", note=note[-NOTE_CHARS:], files=found.files)


class Resolution:
    """One resolution attempt of a task in its worker's worktree, a merge in progress."""

    def __init__(
        self,
        loop: WorkerLoop,
        task: Task,
        claim: Claim,
        lease: LeaseRenewer,
        number: int,
        head: str,
        files: list[str],
    ):
        self.loop, self.task, self.claim, self.lease = loop, task, claim, lease
        self.number, self.head, self.files = number, head, files
        self.ws: Any = loop.workspace
        self.agent: Agent = loop.opt.merge_agent or loop.opt.agent
        self.agent_name = loop.opt.merge_agent_name or loop.opt.agent_name
        self.run_dir = loop.ralph_dir / "runs" / task.id / str(number)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.confined: Any = None

    def log(self, line: str) -> None:
        self.loop.log(f"{self.task.id}: {line}")

    def run(
        self,
        found: Landing,
        commit: str,
        landed: list[str],
        message: str,
        reverify: Reverify | None,
    ) -> Landing:
        """Launch the agent on the merge, then check and land its result; the Landing the
        task's attempt ends with."""
        loop, task, ws = self.loop, self.task, self.ws
        ws.guard(task.id, self.number)  # its own committer marker, hooks and config snapshot
        ws.write_marker(
            {
                "task": task.id,
                "attempt": self.number,
                "base": self.head,
                "run_dir": str(self.run_dir),
            }
        )
        self.log(f"merge conflict in {', '.join(self.files)}; {self.agent_name} resolves it")
        record = loop.store.start_attempt(
            task.id,
            attempt=task.attempts + 1,
            worker=loop.opt.worker,
            agent=self.agent_name,
            run_dir=str(self.run_dir),
            token=self.claim.token,
            host=_host(),
            kind=KIND,
        )
        outer, result, proc = loop.confined, None, None
        outcome, note, landing = "internal_error", "ralph failed while resolving", None
        try:
            if loop.opt.sandbox is not None:
                from ralph.ops.show import write_snapshot

                self.confined = self._sandbox().confine(ws, self.run_dir, self.head, loop.log)
                loop.confined = self.confined  # the verify commands run confined like the agent
                write_snapshot(loop.store, task.id, self.confined.agent_dir)
            prompt = self._prompt(commit, landed)
            (self.run_dir / "prompt.md").write_text(prompt)
            proc = self._process(prompt)
            result = self._launch(proc)
            outcome, note = loop._classify(result, proc.parser)
            if self.confined is not None:
                self.confined.finish(attempt_ref(task.id, self.number))
                self.confined.file_followups(loop.store, task.id, loop.opt.settings)
            conflict.end(ws.git)
            if outcome == "lease_lost":
                raise LeaseLostError(note or "the lease was lost while resolving")
            if outcome == "success":
                outcome, note, landing = self._land(message, reverify)
        except LeaseLostError as exc:
            outcome, note = "lease_lost", exc.message
            raise
        except RalphError as exc:
            if isinstance(exc, WorkspaceError):  # the landing's: one failed attempt of the task
                outcome, note = landing_failure(exc)
                raise
            outcome, note = "internal_error", exc.line()  # its sandbox, its template: re-run
        except Exception as exc:
            outcome, note = landing_failure(exc)
            raise
        finally:
            sha = landing.commit if landing is not None and landing.status == "landed" else None
            if sha is None:
                self._discard()
            if self.confined is not None:
                self.confined.close()
            loop.confined = outer
            self._record(record.id, outcome, note, sha, result, proc)
        if landing is not None and landing.status in FINAL:
            return landing
        if outcome == "interrupted":
            return Landing("interrupted", note=note or "the run stopped while resolving")
        why = (note or outcome).strip()
        return _fallback(found, f"resolution attempt {self.number} ended {outcome}: {why}")

    def _sandbox(self) -> Any:
        """The run's sandbox, or one of the same policy for another agent (its own hosts)."""
        sandbox = self.loop.opt.sandbox
        if self.agent is self.loop.opt.agent:
            return sandbox
        return type(sandbox)(sandbox.exe, sandbox.settings, self.agent, sandbox.root, sandbox.ours)

    def _prompt(self, commit: str, landed: list[str]) -> str:
        loop = self.loop
        template = loop.opt.resolve_prompt or load_prompt(self.ws.root)
        return template.render(
            context(
                self.task,
                repo=self.ws.path,
                worker=loop.opt.worker,
                agent=self.agent_name,
                target=self.ws.target,
                head=self.head,
                commit=commit,
                files=self.files,
                landed=landed,
                variables=loop.opt.variables,
            )
        )

    def _process(self, prompt: str) -> AgentProcess:
        loop, agent = self.loop, self.agent
        env = agent_env(agent, loop.opt, loop.store, loop.workspace, self.task, self.run_dir)
        return agent_process(
            agent,
            loop.opt,
            prompt,
            self.ws.path,
            self.run_dir,
            env,
            confined=self.confined,
            on_signal=loop._on_signal,
        )

    def _launch(self, proc: AgentProcess) -> ProcessResult:
        """Run the agent, killed like the task's own when the lease is lost or the run stops."""
        lease, control = self.lease, self.loop.control
        before = lease.on_lost
        lease.on_lost = lambda why: proc.cancel("lease_lost")
        control.track(proc)
        try:
            if lease.lost:
                raise LeaseLostError(lease.lost)
            return proc.run()
        finally:
            control.untrack(proc)
            lease.on_lost = before

    def _land(
        self, message: str, reverify: Reverify | None
    ) -> tuple[str, str | None, Landing | None]:
        """Collect, check, verify and land the resolved merge: (outcome, note, landing)."""
        loop, ws, task = self.loop, self.ws, self.task
        self.agent.drop_scratch(ws.path)
        rewound = self.confined.rewound() if self.confined is not None else None
        if rewound:
            return "agent_error", rewound, None
        got = ws.collect(task.id, self.number, self.head)
        for line in got.repairs:
            self.log(line)
        if got.refused:
            return got.refused_as, got.refused, None
        paths = [c.path for c in got.changes]
        if self.confined is not None:
            edited = self.confined.settings_edited(got.tree, paths)
            if edited:
                return "agent_error", edited, None
        left = conflict.markers(ws.git, self.head, got.tree, got.changes)
        if left:
            return "markers_left", f"conflict markers left in {', '.join(left[:5])}", None
        settings = loop.opt.settings
        ours = {settings.progress, settings.prd}
        if not [p for p in paths if p not in ours]:
            return "no_changes", "none of the task's changes survived the resolution", None
        outcome, note = loop._verify(task, ws.path, self.run_dir)
        if outcome != "success":
            return outcome, note, None
        signed = message.rstrip("\n") + f"\nConflict-Resolved-By: {self.agent_name}\n"
        landing = ws.land(task.id, got, signed, self.lease.check, reverify)
        outcome = LANDED.get(landing.status, "internal_error")
        return outcome, landing.note or None, landing

    def _discard(self) -> None:
        try:
            kept = self.ws.discard(self.task.id, self.number, self.run_dir / "changes.patch")
        except Exception as exc:  # the worker's own discard runs next and tries again
            self.log(f"could not put back the workspace after resolving: {exc}")
            return
        for item in kept:
            self.log(f"kept the resolution's work: {item}")

    def _record(
        self,
        attempt_id: int,
        outcome: str,
        note: str | None,
        sha: str | None,
        result: ProcessResult | None,
        proc: AgentProcess | None,
    ) -> None:
        """Finish the resolution's attempt row (never counted), count its launch in the run's
        summary and write its result.json."""
        report = proc.parser.report if proc is not None else None
        end = AttemptEnd(
            outcome=outcome,
            exit_code=result.exit_code if result else None,
            cost_usd=report.cost_usd if report else None,
            input_tokens=report.input_tokens if report else None,
            output_tokens=report.output_tokens if report else None,
            session_id=report.session_id if report else None,
            summary=note,
            counted=False,
            cost_estimated=bool(report and report.cost_estimated),
        )
        loop = self.loop
        try:
            loop.store.finish_attempt(attempt_id, **asdict(end))
        except Exception as exc:  # the task's own end still follows
            self.log(f"could not record the resolution attempt: {exc}")
        if proc is not None:
            loop.control.record_resolution(end.cost_usd, resolved=sha is not None)
        data = {
            "task": self.task.id,
            "kind": KIND,
            "outcome": outcome,
            "commit": sha,
            "cost_usd": end.cost_usd,
            "note": note,
            "conflicted": self.files,
            "exit_code": end.exit_code,
            "ending": result.ending if result else None,
            "input_tokens": end.input_tokens,
            "output_tokens": end.output_tokens,
            "session_id": end.session_id,
            "agent": self.agent_name,
            "sandbox": loop.opt.policy(),
            "ended_at": time.time(),
        }
        try:
            (self.run_dir / "result.json").write_text(json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            self.log(f"could not write {self.run_dir / 'result.json'}: {exc}")


def _host() -> str:
    from ralph.hostid import HOST

    return HOST
