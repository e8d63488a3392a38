"""Git across hosts: every host works in its own clone and pushes task commits to one remote.

`RemoteWorktrees` keeps the per-worker worktrees and task branches of `Worktrees`, but a task
branch starts at the remote's target head and integrating it means: fetch `<remote>/<target>`,
rebase the branch onto it, squash it to one commit, check the lease, push. A push refused as not
a fast-forward (another host pushed first) is fetched, rebased and pushed again, a bounded number
of times with jittered backoff. A real conflict aborts the rebase, keeps the branch and returns
the same `IntegrateResult` note as a local merge. After a push the local target branch follows
the remote the way a local merge moves it (a dirty main checkout is never touched).

`push_branches=True` pushes `ralph/<task>` to the remote for review instead of the target.
The host's merge lock is held throughout, so one host's workers never race each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import git
from git.exc import GitCommandError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from ralph import errors
from ralph.worktrees import IntegrateResult, Worktrees, _first_line

PUSH_ATTEMPTS = 8
FETCH_ATTEMPTS = 3
# What git prints when another host won the race to move the branch: the push was not a
# fast-forward of the remote's new head, or the remote's ref moved while it was being updated.
_RACE_MARKS = ("[rejected]", "non-fast-forward", "fetch first", "cannot lock ref", "incorrect old")


class PushRejected(Exception):
    """The remote refused a push because its branch moved since our fetch (retry after one)."""


class RemoteWorktrees(Worktrees):
    """Per-worker worktrees of one host's clone, integrated by pushing to `remote`."""

    def __init__(
        self,
        repo: str | os.PathLike[str],
        remote: str,
        *,
        target: str | None = None,
        push_branches: bool = False,
        push_attempts: int = PUSH_ATTEMPTS,
        retry_wait: float = 0.1,
        lock_timeout: float = 900.0,
    ):
        super().__init__(repo, target=target, lock_timeout=lock_timeout)
        try:
            self.url = self.git.remote("get-url", remote)
        except GitCommandError:
            known = ", ".join(self.git.remote().split()) or "none"
            raise errors.UsageError(
                f"no git remote named {remote!r} in {self.root} (remotes: {known})",
                hint=f"add it with `git remote add {remote} URL`, or pass --remote with another",
            ) from None
        self.remote = remote
        self.remote_ref = f"refs/remotes/{remote}/{self.target}"
        self.push_branches = push_branches
        self.push_attempts = max(1, push_attempts)
        self.retry_wait = retry_wait
        self.log: Callable[[str], None] = lambda line: None

    @property
    def upstream(self) -> str:
        return f"{self.remote}/{self.target}"

    # -- fetching and following the remote ----------------------------------------------------
    def fetch(self) -> str:
        """Fetch the remote's target into `refs/remotes/<remote>/<target>`; returns its head."""
        refspec = f"+refs/heads/{self.target}:{self.remote_ref}"
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(FETCH_ATTEMPTS),
                wait=wait_random_exponential(multiplier=self.retry_wait, max=2.0),
                retry=retry_if_exception_type(GitCommandError),
                reraise=True,
            ):
                with attempt:
                    self.git.fetch("-q", "--no-tags", self.remote, refspec)
        except GitCommandError as exc:
            why = _first_line(exc)
            if "couldn't find remote ref" in why.lower():
                raise errors.WorkspaceError(
                    f"the remote {self.remote} has no branch {self.target}",
                    hint=f"push it once: git push {self.remote} {self.target}",
                ) from None
            raise errors.WorkspaceError(
                f"cannot fetch {self.target} from {self.remote}: {why}",
                hint="check the remote's URL and your access to it (git fetch)",
            ) from None
        head = self._rev(self.remote_ref)
        assert head is not None
        return head

    def start(self, workers: Iterable[str]) -> dict[str, Path]:
        """Fetch first (a wrong remote or a missing branch fails here, before any agent runs)."""
        with self.lock("start"):
            self.fetch()
            why = self.follow()
        if why:
            self.log(why)
        return super().start(workers)

    def start_point(self) -> str | None:
        return self._rev(self.remote_ref) or super().start_point()

    def prepare(self, worker: str, task_id: str) -> Path:
        """Cut the task branch from the remote's newest head (fetched now)."""
        with self.lock(worker):
            self.fetch()
            why = self.follow()
        if why:
            self.log(f"[{worker}] {task_id}: {why}")
        return super().prepare(worker, task_id)

    def follow(self, new: str | None = None, result: IntegrateResult | None = None) -> str:
        """Fast-forward the local target to the remote's head; returns why not, or ''.

        Call with the merge lock held. Like a local merge, a clean main checkout of the target
        is updated with it and a dirty one is left alone (the branch catches up later).
        """
        new = new or self._rev(self.remote_ref)
        old = self._rev(f"refs/heads/{self.target}")
        if new is None or old is None or old == new or self._is_ancestor(new, old):
            return ""
        if not self._is_ancestor(old, new):
            return f"local {self.target} has commits {self.upstream} lacks; left as it is"
        result = result or IntegrateResult("merged", "", self.upstream, self.target, old)
        blocked = self._advance(result, old, new)
        return f"local {self.target} not updated: {blocked}" if blocked else ""

    # -- integration ----------------------------------------------------------------------------
    def integrate(
        self, worker: str, task_id: str, check_lease: Callable[[], bool] = lambda: True
    ) -> IntegrateResult:
        """Rebase the task branch onto the remote target and push it there (or push the branch).

        `check_lease` runs right before every push attempt: False (or LeaseLostError) pushes
        nothing. Never leaves a rebase in progress; on a conflict the branch keeps its commit.
        """
        path = self.path_for(worker)
        g = self._git(path)
        branch = self.branch_for(task_id)
        with self.lock(worker):
            old = self._rev(self.remote_ref) or ""
            result = IntegrateResult("empty", task_id, branch, self.upstream, old)
            if self._head_ref(g) != f"refs/heads/{branch}":
                result.status = "lease_lost"
                result.message = f"{path} is no longer on {branch}: another worker took the task"
                return result
            self._settle(g)
            try:
                if self.push_branches:
                    return self._push_branch(g, result, check_lease)
                for attempt in Retrying(
                    stop=stop_after_attempt(self.push_attempts),
                    wait=wait_random_exponential(multiplier=self.retry_wait, max=2.0),
                    retry=retry_if_exception_type(PushRejected),
                    before_sleep=lambda state: self.log(
                        f"[{worker}] {task_id}: push to {self.upstream} rejected, another "
                        f"host pushed first ({state.outcome.exception() if state.outcome else ''});"
                        " fetching and rebasing again"
                    ),
                ):
                    with attempt:
                        self._attempt(g, result, check_lease)
            except RetryError:
                result.status = "push_failed"
                result.message = (
                    f"{self.remote} refused the push of {branch} {self.push_attempts} times "
                    f"(other hosts kept pushing first); the commit stays on {branch}"
                )
            except errors.WorkspaceError as exc:  # the fetch failed
                result.status, result.message = "push_failed", exc.message
            return result

    def _attempt(
        self, g: git.Git, result: IntegrateResult, check_lease: Callable[[], bool]
    ) -> None:
        """One fetch-rebase-push round; raises PushRejected when another host pushed first."""
        self.fetch()
        upstream = self._rev(self.remote_ref)
        assert upstream is not None
        result.old_head = upstream
        tip = self._rev("HEAD", g)
        if tip is None or self._is_ancestor(tip, upstream):
            result.status, result.message = (
                "empty",
                f"{result.branch} adds nothing to {self.upstream}",
            )
            return
        base = g.merge_base(upstream, tip)
        try:
            g.rebase("-q", "--no-autostash", upstream)
        except GitCommandError as exc:
            self._conflict(g, result, base, tip, exc)
            return
        new = self._squash(g, upstream)
        if new == upstream:
            result.status = "empty"
            result.message = f"{result.branch} adds nothing to {self.upstream} after the rebase"
            return
        if not self._lease_held(result, check_lease, "lease lost before the push; nothing pushed"):
            return
        try:
            g.push("--porcelain", self.remote, f"{new}:refs/heads/{self.target}")
        except GitCommandError as exc:
            text = f"{exc.stdout}\n{exc.stderr}"
            if any(mark in text for mark in _RACE_MARKS):
                raise PushRejected(_refusal(exc)) from None
            result.status = "push_failed"
            result.message = f"cannot push to {self.remote}: {_refusal(exc)}"
            return
        # The remote-tracking ref is ours to keep right: the push proved the remote holds `new`.
        self.git.update_ref(self.remote_ref, new)
        result.status, result.commit = "merged", new
        result.message = self.follow(new, result)
        g.checkout("-q", "--detach", new)
        g.branch("-q", "-D", result.branch)

    def _push_branch(
        self, g: git.Git, result: IntegrateResult, check_lease: Callable[[], bool]
    ) -> IntegrateResult:
        """Squash the task's work to one commit on its base and push `ralph/<task>` for review."""
        upstream = self._rev(self.remote_ref)
        tip = self._rev("HEAD", g)
        if tip is None or upstream is None or self._is_ancestor(tip, upstream):
            result.message = f"{result.branch} adds nothing to {self.upstream}"
            return result
        new = self._squash(g, g.merge_base(upstream, tip))
        if not self._lease_held(result, check_lease, "lease lost before the push; nothing pushed"):
            return result
        try:
            # Forced: an earlier attempt of the same task may have pushed an older version.
            g.push("--porcelain", self.remote, f"+{new}:refs/heads/{result.branch}")
        except GitCommandError as exc:
            result.status = "push_failed"
            result.message = f"cannot push {result.branch} to {self.remote}: {_refusal(exc)}"
            return result
        result.status, result.commit = "merged", new
        result.message = f"pushed {result.branch} to {self.remote} for review"
        g.checkout("-q", "--detach", new)
        g.branch("-q", "-D", result.branch)  # the remote keeps it
        return result

    def contains(self, sha: str) -> bool:
        """Whether the local target or the remote's (as last fetched or pushed) holds `sha`."""
        remote = self._rev(self.remote_ref)
        return super().contains(sha) or (remote is not None and self._is_ancestor(sha, remote))


def _refusal(exc: GitCommandError) -> str:
    """Why a `push --porcelain` failed: its `!` line's verdict (`[rejected] (fetch first)`)."""
    out = exc.stdout if isinstance(exc.stdout, str) else ""
    for line in out.replace("stdout: ", "").strip(" '").splitlines():
        if line.startswith("!"):
            return line.rsplit("\t", 1)[-1].strip()
    return _first_line(exc)
