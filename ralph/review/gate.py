"""The worker's step in review mode: the attempt's one commit goes to a review branch instead of
the target.

The commit is the one a landing would make (same message and trailers), on the target's tip of
that moment: when the target moved while the agent worked, the agent's result is merged onto it
(`merge-tree`, no working tree); a conflict is a merge conflict like a landing's. The target
never moves here, so no merge lock is needed: `ralph approve` (desk.py) lands the commit later
through the same fenced ref transaction as a landing. The worker then ends the task with
`store.send_to_review`, checked against its claim's token. A crash between the branch update
and that call leaves the task open and claimed: its lease runs out and the next attempt writes
the branch again (the target is untouched either way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from git.exc import GitCommandError

from ralph.errors import RalphError, WorkspaceError
from ralph.outcomes import landing_failure
from ralph.review import review_branch
from ralph.workspace.base import Collected, Fence
from ralph.workspace.git import Git, git_env


@dataclass
class ReviewCommit:
    """A task commit waiting for review, as `store.send_to_review` records it."""

    branch: str
    commit: str
    base: str  # the commit's parent: the target's tip when it went to review
    target: str
    verify: dict[str, Any] = field(default_factory=dict)  # {"result", "on": sha verified on}

    def params(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "commit": self.commit,
            "base": self.base,
            "target": self.target,
            "verify": self.verify,
        }


def to_review(
    workspace: Any, task_id: str, collected: Collected, message: str, fence: Fence, verified: bool
) -> tuple[str, str | None, ReviewCommit | None]:
    """Write the task's commit to `refs/heads/ralph/review/<task>`; returns (outcome, note,
    the review): outcome "review", or "merge_conflict" / "no_changes" when the target moved
    meanwhile, or a failed landing's outcome when git refused. `verified`: the verify commands
    passed on the agent's result (on `collected.base`)."""
    g = Git(workspace.root, git_env(workspace.root, workspace.ralph_dir))
    target = workspace.target
    try:
        tree = collected.tree
        if getattr(workspace, "baseline", None):  # --allow-dirty: the user's paths stay out
            tree = workspace._tree_with(g, collected.base, [c.path for c in collected.changes])
        commit = g.commit_tree(tree, [collected.base], message)
        base = collected.base
        worktrees = getattr(workspace, "worktrees", None)  # the remote's head, with a remote
        head = worktrees.head() if worktrees is not None else g.rev(f"refs/heads/{target}")
        if head is not None and head != collected.base:
            merged, files = g.merge_tree(head, commit)
            if merged is None:
                shown = ", ".join(files[:5]) or "unknown files"
                return "merge_conflict", f"Merge conflict with {target}: {shown}.", None
            if merged == g.tree_of(head):
                return "no_changes", f"{target} already has these changes", None
            commit, base = g.commit_tree(merged, [head], message), head
        fence()  # the claim is still ours: only then does the branch move
        branch = review_branch(task_id)
        g("update-ref", "-m", "ralph: sent for review", branch, commit)
    except (GitCommandError, WorkspaceError) as exc:
        return *landing_failure(exc), None
    verify = {"result": "passed", "on": collected.base} if verified else {"result": "none"}
    return "review", None, ReviewCommit(branch, commit, base, target, verify)


def finisher(store: Any, review: ReviewCommit, pulls: Any = None) -> Any:
    """`store.finish`'s signature ending the task in review instead (the worker's `_settle`
    calls whichever it was given): one transaction checked against the claim's token. With
    `pulls` (pull request mode, ralph/review/pulls.py) the pull request is opened right after;
    when that fails, the run's next poll opens it."""

    def finish(task_id: str, *, worker: str, token: int, attempt_id: int | None, end: Any,
               **_: Any) -> Any:  # fmt: skip
        task = store.send_to_review(
            task_id, worker=worker, token=token, attempt_id=attempt_id, end=end, **review.params()
        )
        if pulls is not None:
            try:
                pulls.publish(task_id)
            except Exception as exc:  # the task is safe in review: never a crashed worker
                said = (
                    exc.message if isinstance(exc, RalphError) else f"{type(exc).__name__}: {exc}"
                )
                pulls.log(f"{task_id}: no pull request yet ({said}); the next poll tries")
        return task

    return finish
