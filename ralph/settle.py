"""How an attempt's outcome decides the task's fate: done, back to ready (after a backoff), or
failed for good; and the counts across tasks that trip the breaker. Pure bookkeeping: the
worker makes the one store call (`finish`) with what `Tally.judge` returns."""

from __future__ import annotations

from dataclasses import dataclass

from ralph.control import backoff_delay
from ralph.models import Task
from ralph.options import RunOptions
from ralph.outcomes import DONE, UNCOUNTED


@dataclass
class Verdict:
    """The store's `finish(verdict=...)`, the run summary's bucket (`kind`), and the note."""

    verdict: str  # done | retry | release | failed
    kind: str  # done | retried | skipped | failed
    retry_in: float = 0.0
    note: str | None = None
    counted: bool | None = None  # None: as the attempt says; False: never counted


class Tally:
    """One worker's counts in a row: failed attempts (the breaker), rate limits (the pause's
    backoff) and remote failures (the wait before the remote is asked again)."""

    def __init__(self, opt: RunOptions):
        self.opt = opt
        self.failures_in_a_row = 0
        self.rate_limits_in_a_row = 0
        self.remote_failures = 0
        self.agent_wait = 0.0  # until the pinned agent of the task being settled is back

    def judge(self, task: Task, outcome: str, note: str | None, conflicts: int) -> Verdict:
        """The verdict for `task` whose attempt ended `outcome` (not lease_lost)."""
        opt = self.opt
        if outcome in DONE:
            self.failures_in_a_row = 0
            return Verdict("done", "done", note=note)
        if outcome == "review":  # its commit waits on a review branch (ralph.review)
            self.failures_in_a_row = 0
            return Verdict("review", "review", note=note)
        if outcome == "merge_conflict":
            # Not the agent's failure: the target changed the same lines meanwhile. Its own
            # budget, no attempt counted, and the retry starts from the head that has them.
            if conflicts + 1 >= opt.max_conflicts:
                why = f"{conflicts + 1} merge conflicts; last: {note}"
                return Verdict("failed", "failed", note=why, counted=False)
            return Verdict("retry", "retried", note=note, counted=False)
        if outcome == "remote_failed":
            # Nothing was tried, so nothing counts; the wait grows while the remote stays away,
            # so an unreachable remote never makes the workers spin.
            wait = backoff_delay(self.remote_failures, opt.backoff, opt.backoff_max)
            return Verdict("retry", "retried", wait, note)
        if outcome == "agent_unavailable":  # back once its pinned agent is (ralph.fallback)
            return Verdict("retry", "skipped", self.agent_wait, note, counted=False)
        if outcome in UNCOUNTED:
            return Verdict("release", "skipped", note=note)
        self.failures_in_a_row += 1
        attempts = task.attempts + 1
        if attempts >= opt.max_attempts:
            return Verdict("failed", "failed", note=f"failed {attempts} times; last: {note}")
        wait = backoff_delay(attempts, opt.backoff, opt.backoff_max)
        return Verdict("retry", "retried", wait, note)

    def breaker_open(self) -> bool:
        return self.failures_in_a_row >= self.opt.breaker
