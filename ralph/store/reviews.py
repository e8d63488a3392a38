"""The review gate's part of the store: a task waiting in `review`, and the decision on it.

In `[land] mode = "review"` a finished attempt does not move the target: its commit waits on
`refs/heads/ralph/review/<task>` (ralph/review/) and the task enters the status `review`. A task
in review is not done, so its dependents stay blocked (the stored open-blocker counts move only
when it becomes done) and no worker claims it (it is not open). Each step is one transaction:
- `send_to_review`: the worker's completion, checked against the claim's fencing token like
  `finish`; the attempt ends and a pending row goes into `reviews` in the same transaction.
- `review_landed`: the commit is on the target (approved, or found there after a crash): done.
- `review_returned`: rejected with a note (or sent back on a conflict): open again, the note
  kept for the next attempt's prompt (`{{ task.review_notes }}`).
Every decision is an event naming who took it (`by`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ralph import errors
from ralph.models import AttemptEnd, Task, iso
from ralph.store.core import retried

if TYPE_CHECKING:
    from ralph.store.base import Row, SQLStore, Tx

    _Store = SQLStore
else:
    _Store = object

REVIEW_STATES = ("pending", "landed", "rejected", "closed")


def review_dict(row: Row) -> dict[str, Any]:
    """A `reviews` row as JSON-ready data (times in ISO-8601, the verify result decoded)."""
    data = dict(row)
    for key in ("created_at", "decided_at"):
        data[key] = iso(data.get(key))
    verify = data.get("verify")
    if isinstance(verify, str):
        try:
            data["verify"] = json.loads(verify)
        except ValueError:
            data["verify"] = {"result": verify}
    if data.get("cost_usd") is not None:
        data["cost_usd"] = float(data["cost_usd"])
    return data


class ReviewStore(_Store):
    """Mixed into SQLStore: uses its `transaction()`, `_task`, `_live_claim`, `_event`,
    `_end_live_claim`, `_transition` and `_finish_attempt`."""

    @retried
    def send_to_review(
        self,
        task_id: str,
        *,
        worker: str,
        token: int,
        branch: str,
        commit: str,
        target: str,
        base: str | None = None,
        verify: dict[str, Any] | None = None,
        attempt_id: int | None = None,
        end: AttemptEnd | None = None,
    ) -> Task:
        """A worker's attempt ends with its commit on a review branch: in one transaction
        checked against the claim's token, the claim ends, the task becomes `review`, the
        attempt is finished (counted like a landing) and a pending review is recorded.
        Raises LeaseLostError, changing nothing, when the claim is no longer this token's."""
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            live = self._live_claim(tx, task_id, worker, token, "send to review")
            if task.status != "open":
                raise errors.InvalidTransitionError(f"{task_id} is {task.status}, not open")
            if end is not None and end.counted:  # `attempts`: every counted agent run
                tx.run("task_count_attempt", id=task_id)
            tx.run(
                "review_decide",
                task_id=task_id,
                state="closed",
                now=tx.now,
                by=worker,
                note="superseded by a newer attempt",
                landed=None,
            )
            tx.one(
                "review_insert",
                task_id=task_id,
                attempt_id=attempt_id,
                token=token,
                branch=branch,
                target=target,
                commit=commit,
                base=base,
                verify=json.dumps(verify or {"result": "none"}),
                now=tx.now,
            )
            tx.run("task_set_status", id=task_id, status="review", now=tx.now, done_at=None)
            self._end_live_claim(tx, task_id, "released", reason="review", live=live)
            self._event(
                tx, "review", task_id, worker, token, branch=branch, commit=commit, target=target
            )
            if attempt_id is not None and end is not None:
                self._finish_attempt(tx, attempt_id, end)
            return self._task(tx, task_id)

    @retried
    def pending_review(self, task_id: str) -> dict[str, Any]:
        """The pending review of a task in `review`; InvalidTransitionError otherwise."""
        with self.transaction(write=False) as tx:
            task = self._task(tx, task_id)
            row = tx.one("review_pending", task_id=task_id)
        if task.status != "review" or row is None:
            raise errors.InvalidTransitionError(
                f"{task_id} is {task.status}, not waiting for review",
                hint="`ralph review` lists the tasks waiting",
            )
        return dict(row)

    @retried
    def review_queue(self) -> list[dict[str, Any]]:
        """Every task waiting for review, oldest first, with its title and what it cost."""
        with self.transaction(write=False) as tx:
            return [review_dict(r) for r in tx.all("reviews_queue")]

    @retried
    def reviews_of(self, task_id: str) -> list[dict[str, Any]]:
        """A task's reviews, oldest first: each commit sent for review and its decision."""
        with self.transaction(write=False) as tx:
            self._task(tx, task_id)
            return [review_dict(r) for r in tx.all("reviews_of_task", task_id=task_id)]

    @retried
    def review_landed(self, task_id: str, *, commit: str | None, by: str) -> tuple[Task, list[str]]:
        """The task's reviewed commit is on the target (None: the target already had its
        changes): done, in one transaction; returns the task and the ids it unblocked. A task
        already done (a run-start reconcile got there first) only has its review closed."""
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            if task.status == "done":
                self._review_reconciled(tx, task_id, commit or task.commit_sha, by)
                return task, []
            if task.status != "review":
                raise errors.InvalidTransitionError(
                    f"{task_id} is {task.status}, not waiting for review"
                )
            if commit:
                tx.run("task_set_commit", id=task_id, commit=commit)
            self._review_reconciled(tx, task_id, commit, by)
            unblocked = self._transition(tx, task, "done")
            self._event(tx, "approved", task_id, by=by, commit=commit)
            return self._task(tx, task_id), unblocked

    @retried
    def review_returned(
        self, task_id: str, *, by: str, note: str, state: str = "rejected", kept: str | None = None
    ) -> Task:
        """Back to the queue with `note` for the next attempt's prompt: rejected by a person
        (`state` "rejected"), or closed by ralph when the commit no longer lands cleanly
        ("closed": a conflict or a failed re-verify). `kept`: the ref the commit is kept
        under. One transaction; the event says who and why."""
        if state not in ("rejected", "closed"):
            raise ValueError(f"unknown review state {state!r}")
        if not note.strip():
            raise errors.UsageError("a rejection needs a note", hint='--note "what to change"')
        with self.transaction() as tx:
            task = self._task(tx, task_id)
            if task.status != "review":
                raise errors.InvalidTransitionError(
                    f"{task_id} is {task.status}, not waiting for review"
                )
            tx.run(
                "review_decide",
                task_id=task_id,
                state=state,
                now=tx.now,
                by=by,
                note=note,
                landed=None,
            )
            tx.run("task_set_review_notes", id=task_id, notes=note, now=tx.now)
            tx.run("task_set_status", id=task_id, status="open", now=tx.now, done_at=None)
            kind = "rejected" if state == "rejected" else "review_sent_back"
            self._event(tx, kind, task_id, by=by, note=note, kept=kept)
            return self._task(tx, task_id)

    @retried
    def attach_pr(self, task_id: str, *, number: int, url: str) -> None:
        """Record the pull request opened for a task's pending review (`[land] mode = "pr"`)."""
        with self.transaction() as tx:
            self._task(tx, task_id)
            if not tx.run("review_set_pr", task_id=task_id, number=number, url=url):
                raise errors.InvalidTransitionError(f"{task_id} has no pending review")
            self._event(tx, "pr_opened", task_id, number=number, url=url)

    @staticmethod
    def _review_reconciled(tx: Tx, task_id: str, commit: str | None, by: str) -> None:
        """Close the task's pending review as landed (`commit` on the target) and drop the
        reviewer's notes; nothing when none is pending. SQLStore.reconcile calls it too."""
        closed = tx.run(
            "review_decide",
            task_id=task_id,
            state="landed",
            now=tx.now,
            by=by,
            note=None,
            landed=commit,
        )
        if closed:
            tx.run("task_set_review_notes", id=task_id, notes=None, now=tx.now)
