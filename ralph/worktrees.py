"""Per-worker git worktrees, one fresh branch per task, and the serialized merge into the target.

Each worker owns `.ralph/worktrees/<worker>`, reused between tasks. A task is worked on the branch
`ralph/<task-id>` cut from the target branch's head; when the worker has committed, `integrate`
rebases the branch onto the target and fast-forwards the target under one merge lock shared by
every thread of the process (threading.Lock) and every process on the host (flock on
`.ralph/merge.lock`).

The main checkout. Moving the ref of the branch checked out in the main repo without touching its
index and files would make that checkout show the inverse of the task's change as the user's own
staged edits (a later `git commit -a` would silently revert the task). So, like git's own
`receive.denyCurrentBranch=updateInstead`:
- target not checked out in the main repo (another branch, detached, bare): move the ref;
- checked out and clean: a two-way `read-tree -m -u old new` updates index and files, then
  `update-ref new old` moves the ref (compare-and-swap; rolled back if someone moved it);
- checked out and dirty (or mid-merge/rebase): nothing is touched; the result is `blocked` and the
  caller retries once the user has committed or stashed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import git
from git.exc import GitCommandError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from ralph import errors
from ralph.store import ensure_ralph_dir

BRANCH_PREFIX = "ralph/"
WORKTREES_DIR = "worktrees"
LOCK_NAME = "merge.lock"
# Markers of an operation a crashed git left half done, in a worktree's own git dir.
_IN_PROGRESS = {
    "rebase-merge": ("rebase", "--abort"),
    "rebase-apply": ("rebase", "--abort"),
    "MERGE_HEAD": ("merge", "--abort"),
    "CHERRY_PICK_HEAD": ("cherry-pick", "--abort"),
    "REVERT_HEAD": ("revert", "--abort"),
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

Status = Literal["merged", "empty", "conflict", "lease_lost", "blocked", "push_failed"]


@dataclass
class IntegrateResult:
    """How one task branch's integration ended.

    merged: the target now holds the task's commit (`commit`); empty: the branch added nothing;
    conflict: rebase stopped on `conflict_files` (aborted, branch kept); lease_lost: check_lease
    refused, the target did not move; blocked: the main checkout has local changes on the target
    branch (nothing moved; retry later); push_failed: the remote refused or could not be reached
    (ralph.remote; the commit stays on the branch).
    """

    status: Status
    task_id: str
    branch: str
    target: str
    old_head: str
    commit: str | None = None
    checkout_updated: bool = False
    conflict_files: list[str] = field(default_factory=list)
    diffstat: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("merged", "empty")

    def note(self) -> str:
        """A few lines for the next attempt's prompt saying what went wrong."""
        if self.status != "conflict":
            return self.message
        lines = [
            f"Merge conflict integrating {self.branch} into {self.target}: "
            f"{', '.join(self.conflict_files) or 'unknown files'}."
        ]
        if self.diffstat:
            lines += ["", self.diffstat]
        return "\n".join(lines)


# -- the merge lock -------------------------------------------------------------------------

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


class MergeLock:
    """One lock per repository across threads (threading.Lock) and processes (flock)."""

    def __init__(self, path: Path, *, timeout: float = 900.0, holder: str = ""):
        self.path = path
        self.timeout = timeout
        self.holder = holder or f"pid {os.getpid()}"
        with _thread_locks_guard:
            self._thread_lock = _thread_locks.setdefault(str(path.resolve()), threading.Lock())
        self._fd: int | None = None

    def __enter__(self) -> MergeLock:
        if not self._thread_lock.acquire(timeout=self.timeout):
            raise self._timeout_error()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                for attempt in Retrying(
                    stop=stop_after_delay(self.timeout),
                    wait=wait_exponential(multiplier=0.01, max=0.25),
                    retry=retry_if_exception_type(BlockingIOError),
                    reraise=True,
                ):
                    with attempt:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._timeout_error() from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {self.holder}\n".encode())
            self._fd = fd
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        finally:
            self._thread_lock.release()

    def _timeout_error(self) -> errors.RalphError:
        try:
            who = self.path.read_text().strip() or "unknown"
        except OSError:
            who = "unknown"
        return errors.RalphError(
            f"timed out after {self.timeout:.0f}s waiting for the merge lock {self.path} "
            f"(last holder: {who})",
            hint="a stopped (SIGSTOP) ralph process may hold it",
        )


# -- worktrees ------------------------------------------------------------------------------


@dataclass
class _Entry:
    path: Path
    head: str | None = None
    branch: str | None = None
    locked: bool = False
    prunable: bool = False


class Worktrees:
    """The worktrees of one repository's workers and the merge of their task branches."""

    def __init__(
        self,
        repo: str | os.PathLike[str],
        *,
        target: str | None = None,
        squash: bool = True,
        lock_timeout: float = 900.0,
    ):
        try:
            found = git.Repo(repo, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise errors.UsageError(
                f"{repo} is not inside a git repository",
                hint="run `git init` and make a first commit",
            ) from None
        common = Path(found.common_dir).resolve()
        if found.bare or common.name != ".git":
            raise errors.UsageError(
                f"{repo} has no main working tree (bare repository)",
                hint="run ralph in a normal clone",
            )
        found.close()
        self.root = common.parent
        self._env = {"GIT_EDITOR": "true", "GIT_TERMINAL_PROMPT": "0", "GIT_MERGE_AUTOEDIT": "no"}
        if not (os.environ.get("GIT_COMMITTER_EMAIL") or _config(self.root, "user.email")):
            # Rebase rewrites committers; without an identity git stops and asks for one.
            self._env.update(GIT_COMMITTER_NAME="ralph", GIT_COMMITTER_EMAIL="ralph@localhost")
        self.git = self._git(self.root)
        self.squash = squash
        self.ralph_dir = ensure_ralph_dir(self.root)
        self.dir = self.ralph_dir / WORKTREES_DIR
        self.lock_path = self.ralph_dir / LOCK_NAME
        self.lock_timeout = lock_timeout
        self.target = target or self._current_branch()
        if self._rev(f"refs/heads/{self.target}") is None:
            raise errors.UsageError(
                f"no branch named {self.target!r} in {self.root}",
                hint="pass an existing branch as the target",
            )

    # -- git helpers ------------------------------------------------------------------------
    def _git(self, path: Path) -> git.Git:
        g = git.Git(str(path))
        g.update_environment(**self._env)
        return g

    def _rev(self, ref: str, g: git.Git | None = None) -> str | None:
        try:
            return (g or self.git).rev_parse("--verify", "-q", f"{ref}^{{commit}}")
        except GitCommandError:
            return None

    def _current_branch(self) -> str:
        try:
            ref = self.git.symbolic_ref("-q", "HEAD")
        except GitCommandError:
            raise errors.UsageError(
                f"HEAD of {self.root} is detached",
                hint="check out a branch or pass the target branch",
            ) from None
        if self._rev("HEAD") is None:
            raise errors.UsageError(
                f"{self.root} has no commits yet", hint="make a first commit before running workers"
            )
        return ref.removeprefix("refs/heads/")

    def _entries(self) -> dict[Path, _Entry]:
        """`git worktree list --porcelain`, keyed by resolved path (main worktree included)."""
        entries: dict[Path, _Entry] = {}
        entry: _Entry | None = None
        for line in self.git.worktree("list", "--porcelain").splitlines() + [""]:
            key, _, value = line.partition(" ")
            if key == "worktree":
                entry = _Entry(Path(value))
            elif entry is None:
                continue
            elif key == "HEAD":
                entry.head = value
            elif key == "branch":
                entry.branch = value
            elif key == "locked":
                entry.locked = True
            elif key == "prunable":
                entry.prunable = True
            elif key == "":
                entries[_resolve(entry.path)] = entry
                entry = None
        return entries

    @staticmethod
    def _git_dir(g: git.Git) -> Path:
        return Path(g.rev_parse("--absolute-git-dir"))

    # -- worktree lifecycle -----------------------------------------------------------------
    def branch_for(self, task_id: str) -> str:
        return BRANCH_PREFIX + task_id

    def path_for(self, worker: str) -> Path:
        name = _SAFE_NAME.sub("-", worker).strip(".-") or "worker"
        return self.dir / name

    def lock(self, holder: str = "") -> MergeLock:
        return MergeLock(self.lock_path, timeout=self.lock_timeout, holder=holder)

    def start(self, workers: Iterable[str]) -> dict[str, Path]:
        """Prune what git lost track of and make each worker's worktree ready (repaired or new).

        Under the merge lock: a `git worktree prune` in another process deletes the admin folder
        of a worktree being added ("could not open .git/worktrees/NAME/locked"), which failed
        one of four `ralph worker start` run at once in 2 to 3 rounds of 40.
        """
        with self.lock("start"):
            self.git.worktree("prune")
            return {w: self.repair(w) for w in workers}

    def repair(self, worker: str) -> Path:
        """Make the worker's worktree exist, registered, unlocked, not mid-operation and clean."""
        path = self.path_for(worker)
        entry = self._entries().get(_resolve(path))
        if entry is not None and entry.locked:
            self.git.worktree("unlock", str(path))
        if entry is not None and (entry.prunable or not (path / ".git").exists()):
            with contextlib.suppress(GitCommandError):
                self.git.worktree("remove", "--force", "--force", str(path))
            self.git.worktree("prune")
            entry = None
        if entry is None:
            if path.exists():
                shutil.rmtree(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.git.worktree("add", "--detach", str(path), self._rev(f"refs/heads/{self.target}"))
            return path
        g = self._git(path)
        try:
            self._settle(g)
        except GitCommandError:
            # Too broken to repair in place: start over from a new worktree.
            self.git.worktree("remove", "--force", "--force", str(path))
            return self.repair(worker)
        return path

    def _settle(self, g: git.Git) -> None:
        """Abort a half-done rebase/merge, drop a stale index.lock, discard uncommitted changes."""
        gitdir = self._git_dir(g)
        (gitdir / "index.lock").unlink(missing_ok=True)
        for marker, (command, flag) in _IN_PROGRESS.items():
            if (gitdir / marker).exists():
                try:
                    g.execute(["git", command, flag])
                except GitCommandError:
                    shutil.rmtree(gitdir / marker, ignore_errors=True)
                    with contextlib.suppress(FileNotFoundError):
                        (gitdir / marker).unlink()
        g.reset("--hard", "-q")
        g.clean("-ffdq")

    def start_point(self) -> str | None:
        """The commit a task branch is cut from: the target's head (its remote's, in remote.py)."""
        return self._rev(f"refs/heads/{self.target}")

    def prepare(self, worker: str, task_id: str) -> Path:
        """Check out a fresh `ralph/<task>` branch at the target's head in the worker's worktree.

        A branch left by an earlier attempt (a recorded conflict, a failed agent) is reset here,
        when its retry starts. A stale worktree still holding the branch is detached first.
        """
        path = self.path_for(worker)
        if not (path / ".git").exists():
            self.repair(worker)
        g = self._git(path)
        branch = self.branch_for(task_id)
        with self.lock(worker):
            self._settle(g)
            previous = self._head_ref(g)
            for other_path, entry in self._entries().items():
                if entry.branch == f"refs/heads/{branch}" and other_path != _resolve(path):
                    self._detach(other_path)
            head = self.start_point()
            g.checkout("-q", "-f", "-B", branch, head)
            # The last task's branch goes once it holds nothing the target lacks (no changes).
            if (
                previous
                and previous != f"refs/heads/{branch}"
                and self._is_ancestor(previous, head)
            ):
                with contextlib.suppress(GitCommandError):
                    g.branch("-q", "-D", previous.removeprefix("refs/heads/"))
        g.clean("-ffdq")
        return path

    def _detach(self, path: Path) -> None:
        if not path.exists():
            self.git.worktree("prune")
            return
        other = self._git(path)
        self._settle(other)
        other.checkout("-q", "--detach")

    def finish(self, worker: str) -> None:
        """Leave the worktree detached and clean so no branch stays pinned to it."""
        path = self.path_for(worker)
        if (path / ".git").exists():
            g = self._git(path)
            self._settle(g)
            g.checkout("-q", "--detach")

    def close(self) -> None:
        """`git worktree prune` at exit (worktrees themselves stay for the next run to reuse)."""
        with self.lock("close"), contextlib.suppress(GitCommandError):
            self.git.worktree("prune")

    # -- integration ------------------------------------------------------------------------
    def integrate(
        self, worker: str, task_id: str, check_lease: Callable[[], bool] = lambda: True
    ) -> IntegrateResult:
        """Rebase the task branch onto the target and fast-forward the target, under the lock.

        `check_lease` is called with the lock held right before the target moves; False (or a
        LeaseLostError) leaves the target where it was. Never leaves a rebase in progress.
        """
        path = self.path_for(worker)
        g = self._git(path)
        branch = self.branch_for(task_id)
        with self.lock(worker):
            old = self._rev(f"refs/heads/{self.target}")
            assert old is not None
            result = IntegrateResult("empty", task_id, branch, self.target, old)
            if self._head_ref(g) != f"refs/heads/{branch}":
                # Only a later holder of the task detaches this worktree from its branch.
                result.status = "lease_lost"
                result.message = f"{path} is no longer on {branch}: another worker took the task"
                return result
            self._settle(g)
            tip = self._rev("HEAD", g)
            if tip is None or self._is_ancestor(tip, old):
                result.message = f"{branch} adds nothing to {self.target}"
                return result
            base = g.merge_base(old, tip)
            try:
                g.rebase("-q", "--no-autostash", old)
            except GitCommandError as exc:
                return self._conflict(g, result, base, tip, exc)
            new = self._squash(g, old)
            if new == old:
                result.message = f"{branch} adds nothing to {self.target} after the rebase"
                return result
            if not self._lease_held(
                result, check_lease, "lease lost before the merge; target unmoved"
            ):
                return result
            blocked = self._advance(result, old, new)
            if blocked:
                result.status, result.message = "blocked", blocked
                return result
            result.status, result.commit = "merged", new
            g.checkout("-q", "--detach", new)
            g.branch("-q", "-D", branch)
            return result

    @staticmethod
    def _head_ref(g: git.Git) -> str | None:
        try:
            return g.symbolic_ref("-q", "HEAD")
        except GitCommandError:
            return None

    def _is_ancestor(self, a: str, b: str) -> bool:
        try:
            self.git.merge_base("--is-ancestor", a, b)
            return True
        except GitCommandError:
            return False

    def _conflict(
        self, g: git.Git, result: IntegrateResult, base: str, tip: str, exc: GitCommandError
    ) -> IntegrateResult:
        """Record what clashed, then abort the rebase so nothing is left half done."""
        try:
            files = g.diff("--name-only", "--diff-filter=U").split("\n")
        except GitCommandError:
            files = []
        result.conflict_files = sorted({f for f in files if f})
        with contextlib.suppress(GitCommandError):
            g.rebase("--abort")
        self._settle(g)
        if self._rev("HEAD", g) != tip:  # abort should restore the branch; make sure
            g.checkout("-q", "-f", "-B", result.branch, tip)
        ours = g.diff("--stat=72", f"{base}..{tip}")
        theirs = g.log(
            "--format=  %h %s", "-5", f"{base}..{result.old_head}", "--", *result.conflict_files
        )
        result.diffstat = "\n".join(_tail(ours, 12))
        if theirs:
            result.diffstat += f"\n{result.target} changed those files meanwhile in:\n{theirs}"
        result.status = "conflict"
        result.message = (
            f"conflict rebasing {result.branch} onto {result.target}: "
            f"{', '.join(result.conflict_files) or _first_line(exc)}"
        )
        return result

    def _advance(self, result: IntegrateResult, old: str, new: str) -> str | None:
        """Move the target from old to new; returns why not when the main checkout blocks it."""
        ref = f"refs/heads/{self.target}"
        reason = f"ralph: merge {result.branch}"
        if self._head_ref(self.git) != ref:
            self.git.update_ref("-m", reason, ref, new, old)
            return None
        dirty = self._main_dirty()
        if dirty:
            return (
                f"the main checkout has local changes on {self.target} ({dirty}); "
                f"commit or stash them so ralph can fast-forward {self.target}"
            )
        try:
            self.git.read_tree("-m", "-u", old, new)
        except GitCommandError as exc:
            return f"cannot update the main checkout: {_first_line(exc)}"
        try:
            self.git.update_ref("-m", reason, ref, new, old)
        except GitCommandError:
            # Someone moved the branch between our read and now: put index/files back to it.
            now = self._rev(ref) or old
            self.git.read_tree("-m", "-u", new, now)
            return f"{self.target} moved while merging; will retry"
        result.checkout_updated = True
        return None

    def _main_dirty(self) -> str:
        gitdir = self._git_dir(self.git)
        for marker, (command, _) in _IN_PROGRESS.items():
            if (gitdir / marker).exists():
                return f"a {command} is in progress"
        if (gitdir / "index.lock").exists():
            return "another git command holds the index lock"
        changed = self.git.status("--porcelain", "--untracked-files=no").splitlines()
        if changed:
            names = [line[3:] for line in changed]
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            return ", ".join(names[:3]) + more
        return ""

    def _squash(self, g: git.Git, base: str) -> str:
        """Make the commits after `base` one commit (the last one's message); returns HEAD."""
        new = self._rev("HEAD", g)
        assert new is not None
        if self.squash and int(g.rev_list("--count", f"{base}..{new}")) > 1:
            g.reset("-q", "--soft", base)
            g.commit("-q", "--no-verify", "-C", new)
            new = self._rev("HEAD", g)
            assert new is not None
        return new

    @staticmethod
    def _lease_held(result: IntegrateResult, check_lease: Callable[[], bool], lost: str) -> bool:
        """The fence, right before the target moves: a worker that lost its claim moves nothing."""
        try:
            live = check_lease()
        except errors.LeaseLostError as exc:
            live, result.message = False, exc.message
        if not live:
            result.status = "lease_lost"
            result.message = result.message or lost
        return live

    def contains(self, sha: str) -> bool:
        """Whether the target branch already holds commit `sha`."""
        target = self._rev(f"refs/heads/{self.target}")
        return target is not None and self._is_ancestor(sha, target)

    def branches(self) -> list[str]:
        """The task branches that exist (kept conflicts and unfinished attempts)."""
        out = self.git.for_each_ref("--format=%(refname:short)", f"refs/heads/{BRANCH_PREFIX}")
        return [b for b in out.splitlines() if b]


def _config(root: Path, key: str) -> str:
    try:
        return git.Git(str(root)).config("--get", key)
    except GitCommandError:
        return ""


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path


def _first_line(exc: GitCommandError) -> str:
    text = (exc.stderr or exc.stdout or str(exc)).strip().strip("'").strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("stderr:"):
            return line
    return text.splitlines()[-1] if text else "git failed"


def _tail(text: str, n: int) -> list[str]:
    lines = text.splitlines()
    return lines if len(lines) <= n else [*lines[: n - 1], "  ...", lines[-1]]


# -- what a worktree workspace raises to the loop ----------------------------------------------


class IntegrationError(errors.RalphError):
    """The task's commit could not be merged into the target branch.

    `outcome` tells the loop what to do: merge_conflict (back to the queue, the note goes to the
    next attempt's prompt), lease_lost (someone else holds the task: leave it), interrupted.
    """

    def __init__(self, outcome: str, note: str):
        super().__init__(note)
        self.outcome = outcome
        self.note = note
