"""How an attempt ended: the outcome names, which of them count, and reading them from a
finished agent process."""

from __future__ import annotations

from typing import Any

from git.exc import GitCommandError

from ralph.agents.base import AgentSignal
from ralph.errors import MergeLockTimeoutError, RalphError
from ralph.process import ProcessResult
from ralph.workspace.git import first_line

NOTE_CHARS = 2000

# Outcomes that say nothing about the task itself: its claim goes back, no attempt is counted.
UNCOUNTED = {
    "auth_failed",
    "rate_limited",
    "network_down",
    "interrupted",
    "internal_error",
    "target_moved",
    "remote_failed",
    "agent_unavailable",  # the task's pinned agent is limited (ralph.fallback)
}
# Of those, the ones that must not use up --max-tasks either: nothing was tried.
NOT_TRIED = {"auth_failed", "rate_limited", "network_down", "remote_failed", "agent_unavailable"}
# Outcomes that end the task done (with its landed commit, if any).
DONE = {"success", "no_changes", "reconciled"}
# A workspace's Landing status -> the attempt's outcome.
LANDED = {
    "landed": "success",
    "already": "reconciled",
    "empty": "no_changes",
    "conflict": "merge_conflict",
    "moved": "target_moved",
    "verify_failed": "verify_failed",
    "push_failed": "push_failed",
    "interrupted": "interrupted",
}


def landing_failure(exc: Exception) -> tuple[str, str]:
    """(outcome, note) for a landing that raised: "lock_timeout" (the merge lock stayed held)
    or "git_failed" (git refused or failed, not a race). Both are counted like an agent's
    failure, with backoff and `failed` after max attempts: retried at once they only spin."""

    if isinstance(exc, MergeLockTimeoutError):
        return "lock_timeout", exc.line()
    if isinstance(exc, GitCommandError):
        why = first_line(exc)
    else:
        why = exc.line() if isinstance(exc, RalphError) else str(exc)
    return "git_failed", f"landing failed: {why}"


def note(head: str, result: ProcessResult) -> str:
    """A failure note for the next prompt: what happened, then the output's tail."""
    tail = result.tail()
    text = f"{head}\n{tail}" if tail else head
    return text[-NOTE_CHARS:]


def classify(
    result: ProcessResult,
    parser: Any,
    task_timeout: float | None,
    idle_timeout: float | None,
) -> tuple[str, str | None, AgentSignal | None]:
    """(outcome, note, late signal). Signals come from the parser while the agent ran, or,
    after the exit, from known exit codes and error lines of a run that failed (aider exits 0
    even then: its parser knows); never from the agent's prose. A late signal is returned for
    the caller to act on (stop or pause every worker)."""
    report = parser.report
    signal, late = result.signal, None
    if signal is None and result.cancel_reason is None:
        late = signal = parser.final_signal(
            result.exit_code if result.exit_code is not None else -1
        )
    if signal is not None:
        kinds = {"auth_failed": "auth_failed", "network_down": "network_down"}
        return kinds.get(signal.kind, "rate_limited"), signal.message, late
    if result.cancel_reason == "lease_lost":
        return "lease_lost", "the lease was lost while the agent worked; agent killed", None
    if result.ending == "cancelled":  # an agent that finished within the grace period counts
        return "interrupted", "the run was stopped while the agent worked", None
    if result.ending in ("timeout", "idle_timeout"):
        limit = task_timeout if result.ending == "timeout" else idle_timeout
        what = "ran longer than" if result.ending == "timeout" else "printed nothing for"
        return result.ending, note(f"the agent {what} {limit:g}s and was killed", result), None
    if result.exit_code != 0:
        return "agent_error", note(f"the agent exited with code {result.exit_code}", result), None
    if report.is_error:
        text = (report.result_text or "").strip()[:500]
        return "agent_error", note(f"the agent reported an error: {text}", result), None
    return "success", None, None
