"""Git across hosts: every host works in its own clone and lands task commits on one remote.

Like local worktrees, but the target is the remote's branch: a task's base is the fetched
`<remote>/<target>`, and landing pushes the merged commit together with `refs/ralph/tasks/<id>`
in one `git push --atomic`. The task ref is pushed with `--force-with-lease=<ref>:` (it must not
exist yet), so a second commit of a task is refused by the remote itself, whichever host sends
it. A push that loses a race (another host pushed first) is fetched, merged and sent again.
After a push the local target follows the remote the way a local landing moves it.

`push_branches=True` pushes `ralph/<task>` for review instead of moving the target.
"""

from __future__ import annotations

from pathlib import Path

from git.exc import GitCommandError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from ralph import errors
from ralph.workspace.git import TASK_REFS, PushFailedError, RefRaceError, first_line, task_ref
from ralph.workspace.worktree import Worktrees

FETCH_ATTEMPTS = 3
# What git prints when another host won the race to move a ref.
_RACE_MARKS = (
    "[rejected]",
    "non-fast-forward",
    "fetch first",
    "stale info",
    "cannot lock ref",
    "incorrect old",
)


class RemoteWorktrees(Worktrees):
    """Per-worker worktrees of one host's clone, landing by pushing to `remote`."""

    def __init__(
        self,
        repo: str | Path,
        remote: str,
        *,
        ralph_dir: Path,
        target: str | None = None,
        push_branches: bool = False,
        retry_wait: float = 0.1,
        lock_timeout: float = 900.0,
    ):
        super().__init__(repo, ralph_dir=ralph_dir, target=target, lock_timeout=lock_timeout)
        try:
            self.url = self.main("remote", "get-url", remote)
        except GitCommandError:
            known = ", ".join(self.main("remote").split()) or "none"
            raise errors.UsageError(
                f"no git remote named {remote!r} in {self.root} (remotes: {known})",
                hint=f"add it with `git remote add {remote} URL`, or pass --remote with another",
            ) from None
        self.remote = remote
        self.remote_ref = f"refs/remotes/{remote}/{self.target}"
        self.push_branches = push_branches
        self.retry_wait = retry_wait

    @property
    def upstream(self) -> str:
        return f"{self.remote}/{self.target}"

    def _fetch(self, *refspecs: str) -> None:
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(FETCH_ATTEMPTS),
                wait=wait_random_exponential(multiplier=self.retry_wait, max=2.0),
                retry=retry_if_exception_type(GitCommandError),
                reraise=True,
            ):
                with attempt:
                    self.main("fetch", "-q", "--no-tags", self.remote, *refspecs)
        except GitCommandError as exc:
            why = first_line(exc)
            if "couldn't find remote ref" in why.lower():
                raise errors.WorkspaceError(
                    f"the remote {self.remote} has no branch {self.target}",
                    hint=f"push it once: git push {self.remote} {self.target}",
                ) from None
            raise errors.WorkspaceError(
                f"cannot fetch {self.target} from {self.remote}: {why}",
                hint="check the remote's URL and your access to it (git fetch)",
            ) from None

    def refresh(self) -> None:
        self._fetch(f"+refs/heads/{self.target}:{self.remote_ref}")

    def head(self) -> str:
        head = self.main.rev(self.remote_ref)
        if head is None:
            self.refresh()
            head = self.main.rev(self.remote_ref)
        assert head is not None
        return head

    def start(self, workers):  # type: ignore[no-untyped-def]
        """Fetch first (a wrong remote or a missing branch fails here, before any agent runs),
        with every landed task's ref, for the run-start reconcile."""
        with self.lock("start"):
            self._fetch(
                f"+refs/heads/{self.target}:{self.remote_ref}", f"+{TASK_REFS}*:{TASK_REFS}*"
            )
            self.recover_main()  # a killed follow's paths first, then the next one
            why = self.follow(self.head())
        if why:
            self.log(why)
        return super().start(workers)

    def landed_all(self) -> dict[str, str]:
        return self.main.landed_all(self.remote_ref)

    def repair_task_ref(self, task_id: str) -> str:
        """The remote's refs move in the remote's own transaction; nothing to repair here."""
        return ""

    def landed(self, task_id: str) -> str | None:
        """Asked of the remote itself (one round trip): another host may have landed it."""
        local = self.main.landed(task_id, self.remote_ref)
        if local:
            return local
        try:
            out = self.main("ls-remote", self.remote, task_ref(task_id))
        except GitCommandError as exc:
            raise errors.WorkspaceError(
                f"cannot ask {self.remote} about {task_id}: {first_line(exc)}"
            ) from None
        return out.split()[0] if out.strip() else None

    def advance(self, task_id: str, old: str, new: str, *, defer_sync: bool = False) -> str | None:
        """Push `new` (onto the remote target, or to `ralph/<task>`) with the task's ref, all or
        nothing. RefRaceError when another host won; PushFailedError for anything else. The
        local checkout follows at once (`defer_sync` is not needed: the push dominates)."""
        dest = f"refs/heads/ralph/{task_id}" if self.push_branches else f"refs/heads/{self.target}"
        ref = task_ref(task_id)
        try:
            self.main(
                "push",
                "--atomic",
                "--porcelain",
                f"--force-with-lease={ref}:",
                self.remote,
                f"{'+' if self.push_branches else ''}{new}:{dest}",
                f"{new}:{ref}",
            )
        except GitCommandError as exc:
            text = f"{exc.stdout}\n{exc.stderr}"
            if any(mark in text for mark in _RACE_MARKS):
                raise RefRaceError(_refusal(exc)) from None
            raise PushFailedError(f"cannot push to {self.remote}: {_refusal(exc)}") from None
        self.main("update-ref", ref, new)
        if not self.push_branches:
            self.main("update-ref", self.remote_ref, new)
            why = self.follow(new)
            if why:
                self.log(f"{task_id}: {why}")
        return None

    def follow(self, new: str) -> str:
        """Fast-forward the local target (and a clean main checkout of it) to `new`; returns
        why not, or ''. Call with the merge lock held."""
        local = self.main.rev(self.target_ref)
        if local is None or local == new or self.main.is_ancestor(new, local):
            return ""
        if not self.main.is_ancestor(local, new):
            return f"local {self.target} has commits {self.upstream} lacks; left as it is"
        if self.main.head_ref() != self.target_ref:
            self.main("update-ref", self.target_ref, new, local)
            return ""
        try:
            why = self.move_main(
                local, new, lambda: self.main("update-ref", self.target_ref, new, local)
            )
        except GitCommandError as exc:
            return f"local {self.target} not updated: {first_line(exc)}"
        return f"local {self.target} not updated: {why}" if why else ""


def _refusal(exc: GitCommandError) -> str:
    """Why a `push --porcelain` failed: its `!` line's verdict (`[rejected] (fetch first)`)."""
    out = exc.stdout if isinstance(exc.stdout, str) else ""
    for line in out.replace("stdout: ", "").strip(" '").splitlines():
        if line.startswith("!"):
            return line.rsplit("\t", 1)[-1].strip()
    return first_line(exc)
