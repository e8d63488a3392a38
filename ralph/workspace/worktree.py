"""Per-worker git worktrees and the serialized landing of task commits on the target branch.

Each worker owns `.ralph/worktrees/<worker>`, detached at the task's base. Landing, under the
merge lock: the task's commit is merged onto the target's current head with `git merge-tree`
(no rebase in progress can be left behind by a kill), verified again when the target moved
(the merge-queue rule), fenced, and the target moves together with `refs/ralph/tasks/<id>` in one
ref transaction.

The main checkout. When the target is checked out there, its index and files follow the target,
only the paths the landing changes and only where they are ralph's (workspace/mainsync.py); the
user's edits elsewhere never block it, an edit to one of those paths makes the landing wait, and
one made meanwhile is kept (a copy under `refs/ralph/saved/`). `.ralph/main-sync.json` is written
around that step, so a kill between the ref and the files is finished by the next landing (or
run), without touching what the user changed since. The files move under their own lock
(`.ralph/main-sync.lock`), after the merge lock is given back: the next landing merges meanwhile,
and finishes that move itself before it checks and moves the target again.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import git
from git.exc import GitCommandError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

from ralph import errors
from ralph.workspace.base import Collected, Fence, GitWorkspace, Landing, Reverify
from ralph.workspace.git import (
    IN_PROGRESS,
    Git,
    PushFailedError,
    RefRaceError,
    RefRefusedError,
    disk_full,
    git_env,
    task_ref,
)
from ralph.workspace.mainsync import MainSync
from ralph.workspace.mergelock import LOCK_NAME, MergeLock

WORKTREES_DIR = "worktrees"
# ralph owns its worktrees: their commands may use git's fast index features.
FAST_INDEX = {"core.untrackedCache": "true", "core.splitIndex": "true"}
MAIN_SYNC = "main-sync.json"
SYNC_LOCK_NAME = "main-sync.lock"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class _Entry:
    path: Path
    locked: bool = False
    prunable: bool = False


def main_root(repo: str | Path) -> Path:
    """The main working tree of the repository holding `repo` (where `.ralph/` belongs, even
    when `repo` is inside a linked worktree); UsageError outside one or for a bare one."""
    try:
        found = git.Repo(repo, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise errors.UsageError(
            f"{repo} is not inside a git repository",
            hint="run `git init` and make a first commit",
        ) from None
    common = Path(found.common_dir).resolve()
    found.close()
    if common.name != ".git":
        raise errors.UsageError(
            f"{repo} has no main working tree (bare repository)",
            hint="run ralph in a normal clone",
        )
    return common.parent


def _index_busy(exc: BaseException) -> bool:
    """git could not take an index lock another git holds."""
    return isinstance(exc, GitCommandError) and "index.lock': File exists" in str(exc)


class Worktrees:
    """The worktrees of one repository's workers, and the moves of its target branch."""

    def __init__(
        self,
        repo: str | Path,
        *,
        ralph_dir: Path,
        target: str | None = None,
        lock_timeout: float = 900.0,
    ):
        self.root = main_root(repo)
        self.ralph_dir = ralph_dir  # the caller's: `.ralph/` at main_root(repo)
        self.env = git_env(self.root, ralph_dir)
        self.main = Git(self.root, self.env)
        self.dir = self.ralph_dir / WORKTREES_DIR
        self.lock_timeout = lock_timeout
        self.race_limit = 20
        self.log: Callable[[str], None] = lambda line: None
        self.shared_guard: dict[Path, bytes | None] = {}  # GuardedFiles' run-start snapshot
        self.replace_refs: dict[str, str] | None = None  # refs/replace/* at the run's start
        self.target = target or self._current_branch()
        if self.main.rev(f"refs/heads/{self.target}") is None:
            raise errors.UsageError(
                f"no branch named {self.target!r} in {self.root}",
                hint="pass an existing branch as the target",
            )

    def _current_branch(self) -> str:
        ref = self.main.head_ref()
        if ref is None:
            raise errors.UsageError(
                f"HEAD of {self.root} is detached",
                hint="check out a branch or pass the target branch",
            )
        if self.main.rev("HEAD") is None:
            raise errors.UsageError(
                f"{self.root} has no commits yet", hint="make a first commit before running workers"
            )
        return ref.removeprefix("refs/heads/")

    @property
    def target_ref(self) -> str:
        return f"refs/heads/{self.target}"

    def refresh(self) -> None:
        """Learn where the target is now (a fetch, in remote.py)."""

    def head(self) -> str:
        """Where task bases are cut from: the target's head (the remote's, in remote.py)."""
        head = self.main.rev(self.target_ref)
        assert head is not None
        return head

    def lock(self, holder: str = "") -> MergeLock:
        return MergeLock(self.ralph_dir / LOCK_NAME, timeout=self.lock_timeout, holder=holder)

    def sync_lock(self) -> MergeLock:
        """Held while the main checkout's files move and while the checked-out target's ref
        moves (taken after the merge lock, never before it)."""
        return MergeLock(
            self.ralph_dir / SYNC_LOCK_NAME, timeout=self.lock_timeout, holder="main-sync"
        )

    # -- worktree lifecycle -----------------------------------------------------------------
    def path_for(self, worker: str) -> Path:
        name = _SAFE_NAME.sub("-", worker).strip(".-") or "worker"
        return self.dir / name

    def _entries(self) -> dict[Path, _Entry]:
        entries: dict[Path, _Entry] = {}
        entry: _Entry | None = None
        for line in self.main("worktree", "list", "--porcelain").splitlines() + [""]:
            key, _, value = line.partition(" ")
            if key == "worktree":
                entry = _Entry(Path(value))
            elif entry is None:
                continue
            elif key == "locked":
                entry.locked = True
            elif key == "prunable":
                entry.prunable = True
            elif key == "":
                entries[_resolve(entry.path)] = entry
                entry = None
        return entries

    def start(self, workers: Iterable[str]) -> dict[str, Path]:
        """Prune what git lost track of, put a half-moved main checkout right, and make each
        worker's worktree exist."""
        # Under the merge lock: one process's `worktree prune` would otherwise delete another's
        # half-added worktree when several workers start at once.
        with self.lock("start"):
            self.main("worktree", "prune")
            self.recover_main()
            return {w: self.repair(w) for w in workers}

    def repair(self, worker: str) -> Path:
        """Make the worker's worktree exist, registered, unlocked and not mid-operation."""
        path = self.path_for(worker)
        entry = self._entries().get(_resolve(path))
        if entry is not None and entry.locked:
            self.main("worktree", "unlock", str(path))
        if entry is not None and (entry.prunable or not (path / ".git").exists()):
            with contextlib.suppress(GitCommandError):
                self.main("worktree", "remove", "--force", "--force", str(path))
            self.main("worktree", "prune")
            entry = None
        if entry is None:
            if path.exists():
                shutil.rmtree(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.main("worktree", "add", "--detach", str(path), self.head())
            return path
        g = Git(path, self.env)
        try:
            self._repair_in_place(worker, g)
        except GitCommandError:  # too broken to repair in place: start over
            self.main("worktree", "remove", "--force", "--force", str(path))
            return self.repair(worker)
        return path

    @retry(retry=retry_if_exception(_index_busy), stop=stop_after_attempt(5),
           wait=wait_fixed(0.2), reraise=True)  # fmt: skip
    def _repair_in_place(self, worker: str, g: Git) -> None:
        """Settle and tidy the worktree. Another git holding its index lock for a moment (an
        editor's `git status`) is waited out: starting over would delete the leftovers `tidy`
        had not saved yet."""
        g.settle()
        self.tidy(worker, g)

    def marker_for(self, worker: str) -> Path:
        return self.dir / f"{self.path_for(worker).name}.json"

    def tidy(self, worker: str, g: Git) -> str | None:
        """Save what a killed attempt left in the worktree as a patch beside that attempt's
        output (named in its marker), then clean it; returns the patch's path, if any."""
        marker = self.marker_for(worker)
        saved = None
        try:
            data = json.loads(marker.read_text())
        except (OSError, ValueError):
            data = None
        base = str(data.get("base")) if data else g.rev("HEAD")
        if data and base:
            keep = Path(str(data.get("run_dir") or self.ralph_dir / "tmp")) / "leftovers.patch"
            try:
                if g.save_patch(base, keep):
                    saved = str(keep)
            except (OSError, GitCommandError) as exc:
                if not disk_full(exc):
                    raise
                raise errors.WorkspaceError(
                    f"the disk is full: cannot save what the last attempt left in {g.path}",
                    hint="free some space and run again",
                ) from exc
        g.reset_hard(g.rev("HEAD") or self.head(), keep_ralph_dir=False)
        marker.unlink(missing_ok=True)
        return saved

    def finish(self, worker: str) -> None:
        """Leave the worktree clean at the target's head for the next run."""
        path = self.path_for(worker)
        if (path / ".git").exists():
            Git(path, self.env).reset_hard(self.head(), keep_ralph_dir=False)

    def close(self) -> None:
        # A merge lock still held at the end (a stopped process) only postpones the prune.
        with contextlib.suppress(GitCommandError, errors.MergeLockTimeoutError), self.lock("close"):
            self.main("worktree", "prune")

    # -- moving the target ------------------------------------------------------------------
    def landed(self, task_id: str) -> str | None:
        return self.main.landed(task_id, self.target_ref)

    def landed_all(self) -> dict[str, str]:
        return self.main.landed_all(self.target_ref)

    def repair_task_ref(self, task_id: str) -> str:
        return self.main.repair_task_ref(task_id, self.target_ref)

    def advance(self, task_id: str, old: str, new: str, *, defer_sync: bool = False) -> str | None:
        """Move the target from old to new and create the task's ref, in one ref transaction;
        returns why not when the main checkout blocks it. Call with the merge lock held.
        Raises RefRaceError when git refused (the task's ref exists, or the target moved).
        `defer_sync`: the main checkout's files are left for `sync_main` (see move_main)."""
        lines = [f"create {task_ref(task_id)} {new}", f"update {self.target_ref} {new} {old}"]
        scratch = self.ralph_dir / "tmp"
        if self.main.head_ref() != self.target_ref:
            self.main.update_refs(lines, scratch)
            return None
        move_ref = lambda: self.main.update_refs(lines, scratch)  # noqa: E731
        return self.move_main(old, new, move_ref, defer=defer_sync) or None

    def move_main(
        self, old: str, new: str, move_ref: Callable[[], None], *, defer: bool = False
    ) -> str:
        """Move the checked-out target from old to new (`move_ref` moves the ref) and the main
        checkout's index and files with it, touching only the paths the move changes; returns
        why not ('' when moved). A path of the move the user changed makes it wait; what the
        move then finds changed is kept (see mainsync). The ref moves first: when git refuses
        it, nothing was touched. Call with the merge lock held. With `defer`, the files are
        left to `sync_main`, called once the merge lock is given back: its marker says what
        to do, and the next move (or run) finishes it first if that never comes."""
        with self.sync_lock():
            self._finish_pending()  # the previous landing's files, if it has not yet
            busy = self._main_busy()
            if busy:
                return f"the main checkout is busy: {busy}"
            sync = self._sync()
            paths = sync.changed(old, new)
            users = sync.users(old, paths)
            if users:
                return (
                    f"the main checkout has local changes on {self.target} ({_shown(users)}); "
                    f"commit or stash them so ralph can fast-forward {self.target}"
                )
            marker = self.ralph_dir / MAIN_SYNC
            marker.write_text(json.dumps({"old": old, "new": new}))
            try:
                move_ref()
            except BaseException:
                # A git killed after its transaction committed fails here with the ref moved:
                # the marker then stays, so the next move (or run) moves the checkout too.
                with contextlib.suppress(Exception):
                    if self.main.rev(self.target_ref) == old:
                        marker.unlink(missing_ok=True)  # nothing moved
                raise
            if not defer:
                self._finish_main(marker, old, new, paths, sync)
        return ""

    def sync_main(self) -> None:
        """Finish moving the main checkout's files after a landing (its marker), unless a
        later landing already did; needs no merge lock."""
        with self.sync_lock():
            self._finish_pending()

    def recover_main(self) -> None:
        """A landing killed inside its ref transaction leaves stale ref locks (removed); one
        killed while it moved the main checkout (its marker is there) has the paths of that
        move put where the target's ref now is, except those the user changed since (kept,
        with a copy under refs/ralph/saved/). Call with the merge lock held."""
        self.main.clear_stale_ref_locks([self.target_ref])
        with self.sync_lock():
            self._finish_pending()

    def _finish_pending(self) -> None:
        """The move the marker names, if any, finished (see recover_main); with the sync lock."""
        marker = self.ralph_dir / MAIN_SYNC
        if not marker.exists():
            return
        move = self._pending_move()
        if move is None:
            marker.unlink(missing_ok=True)  # unreadable: nothing it names can be finished
            return
        old, new = move
        if self.main.head_ref() != self.target_ref or self.main.rev(self.target_ref) is None:
            marker.unlink(missing_ok=True)  # the user switched branches: their files now
            return
        if self._main_busy():
            return  # left for the next landing
        sync = self._sync()
        try:
            paths = sync.changed(old, new)
        except GitCommandError:
            marker.unlink(missing_ok=True)  # a commit that is gone: nothing of ours to finish
            return
        self._finish_main(marker, old, new, paths, sync)

    def _finish_main(
        self, marker: Path, old: str, new: str, paths: list[str], sync: MainSync | None = None
    ) -> None:
        """The paths of a move at the target's ref, the user's left alone; the marker goes
        once that worked (otherwise the next landing's recover_main does it again)."""
        head = self.main.rev(self.target_ref)
        assert head is not None
        try:
            synced = (sync or self._sync()).apply(head, [old, new], paths)
        except (GitCommandError, OSError) as exc:
            self.log(f"the main checkout is not yet at {self.target}: {exc}; tried again later")
            return
        marker.unlink(missing_ok=True)
        if synced.kept or synced.strays:
            self.log(synced.note())

    def _sync(self) -> MainSync:
        return MainSync(self.main, self.root, self.ralph_dir / "tmp")

    def _main_busy(self) -> str:
        """Why the main checkout cannot be moved now: a git operation in progress there, or
        its index lock held by a live git (a stale one is removed; an index git cannot read
        is rebuilt at the commit the files are at)."""
        gitdir = self.main.git_dir()
        for name, (command, _) in IN_PROGRESS.items():
            if (gitdir / name).exists():
                return f"a {command} is in progress"
        busy = self.main.clear_stale_index_lock()
        if not busy and (damage := self.main.index_damage()):
            self.log(self.main.rebuild_index(self._files_at(), damage))
        return busy

    def _files_at(self) -> str:
        """The commit the main checkout's files are at: a pending move's start, else HEAD."""
        move = self._pending_move()
        return move[0] if move else "HEAD"

    def _pending_move(self) -> tuple[str, str] | None:
        """The (old, new) commits of the main-checkout move the marker names, if it names one."""
        try:
            data = json.loads((self.ralph_dir / MAIN_SYNC).read_text())
            return str(data["old"]), str(data["new"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def workspace(
        self,
        worker: str,
        *,
        wait: Callable[[float], bool],
        log: Callable[[str], None] = lambda line: None,
    ) -> WorktreeWorkspace:
        return WorktreeWorkspace(self, worker, wait=wait, log=log)


class WorktreeWorkspace(GitWorkspace):
    """One worker's worktree: detached at each task's base; lands through `Worktrees`."""

    blocked_poll = 2.0

    def __init__(
        self,
        worktrees: Worktrees,
        worker: str,
        *,
        wait: Callable[[float], bool],
        log: Callable[[str], None] = lambda line: None,
    ):
        super().__init__(
            worktrees.root, worktrees.path_for(worker), worktrees.target, worktrees.ralph_dir
        )
        self.worktrees, self.worker, self.wait, self.log = worktrees, worker, wait, log
        self.git.g.update_environment(**git_env(self.root, self.ralph_dir, **FAST_INDEX))
        self.shared_guard = worktrees.shared_guard  # the common git dir's files, once a run

    def marker_path(self) -> Path:
        return self.worktrees.marker_for(self.worker)

    def _replace_baseline(self) -> dict[str, str]:
        """Replace refs are shared by every worktree: kept as the run found them."""
        if self.worktrees.replace_refs is None:
            self.worktrees.replace_refs = super()._replace_baseline()
        return self.worktrees.replace_refs

    def landed(self, task_id: str) -> str | None:
        return self.worktrees.landed(task_id)

    def landed_all(self) -> dict[str, str]:
        return self.worktrees.landed_all()

    def prepare(self, task_id: str, attempt: int, run_dir: Path) -> str:
        """The worktree exactly at the target's head: HEAD, index, files; leftovers of a killed
        attempt are saved as a patch beside that attempt's output first."""
        if not (self.path / ".git").exists():
            self.worktrees.repair(self.worker)
        g = self.git
        base = self.worktrees.head()
        if self.read_marker() is not None:  # a killed or unfinished attempt: save, then clean
            g.settle()
            saved = self.worktrees.tidy(self.worker, g)
            if saved:
                self.log(f"saved what a killed attempt left in {self.path} to {saved}")
        # After a clean finish the worktree holds only tracked files (and maybe a `.ralph/`
        # the agent made, never staged): one checkout moves it.
        shutil.rmtree(self.path / ".ralph", ignore_errors=True)
        g("checkout", "-q", "-f", "--detach", base)
        g("clean", "-ffdq")  # anything written between tasks (the untracked cache keeps it cheap)
        self.base = base
        self.write_marker(
            {"task": task_id, "attempt": attempt, "base": base, "run_dir": str(run_dir)}
        )
        self.guard(task_id, attempt)
        return base

    def land(
        self,
        task_id: str,
        collected: Collected,
        message: str,
        fence: Fence,
        reverify: Reverify | None = None,
    ) -> Landing:
        g, main = self.git, self.worktrees.main
        commit = g.commit_tree(collected.tree, [collected.base], message)
        waited, races = False, 0
        # The (head, merged tree) the verify commands passed on. They run outside the merge
        # lock (a slow suite held every other landing, up to the lock's timeout); under the
        # lock the head is looked at again, and a newer head is merged and verified again.
        verified: tuple[str, str] | None = None
        while True:
            verify_on: tuple[str, str] | None = None
            landed: Landing | None = None
            with self.worktrees.lock(self.worker):
                # stale ref locks only: a pending move of the main checkout's files is finished
                # by `advance` (the previous landing may still be doing it, under its own lock)
                main.clear_stale_ref_locks([self.worktrees.target_ref])
                repaired = self.worktrees.repair_task_ref(task_id)
                if repaired:
                    self.log(f"{task_id}: {repaired}")
                try:
                    self.worktrees.refresh()
                except errors.WorkspaceError as exc:
                    return Landing("push_failed", note=exc.message)
                fence()
                already = self.worktrees.landed(task_id)
                if already:  # a move it left pending (its git killed after the commit) too
                    with contextlib.suppress(GitCommandError, OSError, errors.RalphError):
                        self.worktrees.sync_main()
                    return Landing("already", already)
                head = self.worktrees.head()
                new = commit
                if head != collected.base:
                    tree, files = main.merge_tree(head, commit)
                    if tree is None:
                        return Landing(
                            "conflict",
                            note=_conflict_note(main, self.target, collected.base, head, files),
                            files=files,
                        )
                    if tree == main.tree_of(head):
                        return Landing("empty", note=f"{self.target} already has these changes")
                    if reverify is not None and verified != (head, tree):
                        verify_on = (head, tree)
                    else:
                        new = main.commit_tree(tree, [head], message)
                raced, blocked = False, ""
                if verify_on is None:
                    try:
                        blocked = self.worktrees.advance(task_id, head, new, defer_sync=True)
                    except PushFailedError as exc:
                        return Landing("push_failed", note=str(exc))
                    except RefRaceError as exc:
                        if isinstance(exc, RefRefusedError):
                            raise  # not a race: an attempt that failed (the worker counts it)
                        races += 1  # the task's ref appeared or the target moved: look again
                        if races >= self.worktrees.race_limit:
                            return Landing(
                                "push_failed", note=f"lost the race to land {races} times: {exc}"
                            )
                        raced, blocked = True, ""
                    if not raced and blocked is None:
                        self.clear_marker()
                        landed = Landing("landed", new)
            if landed is not None:  # the main checkout's files, outside the merge lock
                try:
                    self.worktrees.sync_main()
                except (GitCommandError, OSError, errors.RalphError) as exc:  # landed all the same
                    self.log(f"{task_id}: the main checkout is not yet at {self.target}: {exc}")
                return landed
            if verify_on is not None and reverify is not None:  # outside the lock
                head, tree = verify_on
                g.reset_hard(main.commit_tree(tree, [head], message), keep_ralph_dir=False)
                note = reverify(self.path)
                if note:  # back to the agent's own result, for discard's patch
                    g("read-tree", "-u", "--reset", collected.tree)
                    g("update-ref", "--no-deref", "HEAD", collected.base)
                    return Landing("verify_failed", note=note)
                verified = verify_on
                continue
            if raced:  # shortly again, outside the lock (a stale ref lock ages out meanwhile)
                if not self.wait(min(1.0, 0.1 * races)):
                    return Landing("interrupted", note="the run stopped while landing")
                continue
            if not waited:
                self.log(f"{task_id}: waiting to land: {blocked}")
                waited = True
            if not self.wait(self.blocked_poll):
                return Landing("interrupted", note=f"the run stopped while waiting: {blocked}")

    def finish(self) -> None:
        """Clean for the next run, unless an attempt did not end cleanly (its discard failed,
        e.g. on a full disk): its marker stays, and the next run saves its work, then cleans."""
        if self.read_marker() is not None:
            return
        self.worktrees.finish(self.worker)


def _shown(paths: list[str]) -> str:
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return ", ".join(paths[:3]) + more


def _conflict_note(main: Git, target: str, base: str, head: str, files: list[str]) -> str:
    lines = [f"Merge conflict landing on {target}: {', '.join(files) or 'unknown files'}."]
    with contextlib.suppress(GitCommandError):
        theirs = main("log", "--format=  %h %s", "-5", f"{base}..{head}", "--", *files)
        if theirs:
            lines += [f"{target} changed those files meanwhile in:", theirs]
    return "\n".join(lines)


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path
