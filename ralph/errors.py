"""Every error ralph raises on purpose, each with the exit code the CLI returns for it.

The docstring of each class is its default message; a subclass names a problem a user can fix.
"""

from __future__ import annotations

from typing import Any

from ralph.models import iso


class RalphError(Exception):
    """Something went wrong."""

    exit_code = 1
    hint: str | None = None

    def __init__(self, message: str | None = None, *, hint: str | None = None, **data: Any):
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        if hint:
            self.hint = hint
        self.data = data
        super().__init__(self.message)

    def line(self) -> str:
        """The one line the CLI prints for this error."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(RalphError):
    """Invalid value."""

    exit_code = 2


class NotFoundError(RalphError):
    """Not found."""

    exit_code = 3


class TaskNotFoundError(NotFoundError):
    """No such task."""

    def __init__(self, task_id: str):
        super().__init__(
            f"no task with id {task_id!r}", hint="`ralph list` shows the ids", task_id=task_id
        )
        self.task_id = task_id


class WorkerNotFoundError(NotFoundError):
    """No such worker."""


class ClaimNotFoundError(NotFoundError):
    """No such claim."""


class AlreadyClaimedError(RalphError):
    """The task is already claimed by another worker."""

    exit_code = 4

    def __init__(self, task_id: str, holder: str, expires_at: float | None = None):
        until = f" until {iso(expires_at)}" if expires_at else ""
        super().__init__(f"{task_id} is already claimed by {holder}{until}", task_id=task_id)
        self.task_id = task_id
        self.holder = holder
        self.expires_at = expires_at


class LeaseLostError(RalphError):
    """The claim's lease is gone: it expired, was released, or another worker holds the task."""

    exit_code = 5


class NotHolderError(LeaseLostError):
    """Only the worker holding the claim may do that."""


class RenewalLimitError(LeaseLostError):
    """The claim was renewed as often as allowed."""


class InvalidTransitionError(RalphError):
    """That change of status is not allowed."""

    exit_code = 6


class BlockedError(InvalidTransitionError):
    """The task waits on blockers that are not done."""


class CycleError(InvalidTransitionError):
    """That dependency would make a cycle."""


class StoreError(RalphError):
    """The task store cannot be opened or used."""

    exit_code = 7


class NoStoreError(StoreError):
    """No task store here yet: run `ralph init` (or `ralph add`) to start a project."""

    def __init__(self, where: str):
        super().__init__(
            f"no task store at {where}",
            hint="run `ralph init` to start a project here, or point --db or RALPH_DB at a store",
            where=where,
        )


class ConfigError(RalphError):
    """The configuration is invalid."""

    exit_code = 8


class WorkspaceError(RalphError):
    """The git working tree cannot be used: not a repository, uncommitted changes, or git failed."""

    exit_code = 9


class MergeLockTimeoutError(WorkspaceError):
    """Waited too long for the merge lock: another landing holds it (or a stopped process)."""


class AgentAuthError(RalphError):
    """The agent could not authenticate; every worker stopped and no attempt was counted."""

    exit_code = 10


class BreakerOpenError(RalphError):
    """Too many consecutive failed attempts: the run stopped (circuit breaker)."""

    exit_code = 11


class RunInterruptedError(RalphError):
    """Stopped by SIGTERM/SIGINT; claims were released and nothing half-done was committed."""

    exit_code = 12


class TasksFailedError(RalphError):
    """The run finished, but some of its tasks ended failed."""

    exit_code = 13


class NotifyError(RalphError):
    """A notification could not be sent."""

    exit_code = 14


class SandboxUnavailableError(RalphError):
    """The sandbox cannot run here (no bwrap, no user namespaces, not Linux)."""

    exit_code = 15


class GitHubError(RalphError):
    """The GitHub CLI is missing, not logged in, or GitHub refused a request."""

    exit_code = 16


EXIT_CODES: dict[int, str] = {
    0: "success (for `ralph run`: the queue drained or a cap was reached cleanly)",
    1: "unexpected error",
    2: "invalid arguments or values (bad duration, unknown status, malformed file)",
    3: "not found (task, worker, claim)",
    4: "already claimed by another worker",
    5: "lease lost: expired, released, or held by someone else",
    6: "invalid transition (done twice, blocked, cycle, open children)",
    7: "task store unusable (not a database, corrupted, bad URL, unreachable server) or none "
    "yet (a read command outside a project: run `ralph init`)",
    8: "configuration error (ralph.toml, templates, agents)",
    9: "git working tree unusable (not a repository, uncommitted changes, another run in this "
    "checkout, git failed, disk full)",
    10: "`ralph run`: an agent could not authenticate; every worker stopped",
    11: "`ralph run`: too many consecutive failures opened the circuit breaker",
    12: "`ralph run`: stopped by SIGTERM/SIGINT/SIGHUP while an agent worked; claims released, "
    "nothing half-done committed",
    13: "`ralph run`: finished, but at least one task ended failed",
    14: "`ralph notify test`: at least one notification URL failed",
    15: "`ralph run`: the sandbox cannot run here (pass --no-sandbox to run agents unconfined)",
    16: "GitHub: the `gh` CLI is missing or not logged in, or GitHub refused the request",
}
