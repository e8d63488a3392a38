"""Git plumbing for task commits, through GitPython's `git` (the git binary).

A task's commit is built without `git commit`: `add -A` stages whatever the agent left (edits,
`git mv`, `git rm`, its own commits, odd names), `write-tree` + `commit-tree` make one commit on
the task's base, and `update-ref --stdin` moves the target branch and creates
`refs/ralph/tasks/<id>` in one all-or-nothing ref transaction. git refuses the second `create`,
so no process, not even one whose lease ran out, can land a task twice. No commit hook runs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import git
from git.exc import GitCommandError

from ralph.errors import WorkspaceError

# What git says of an index it cannot read (read-cache.c)
INDEX_DAMAGE = re.compile(r"index file|index entry|bad signature|bad index")

RALPH_DIR = ".ralph"
TASK_REFS = "refs/ralph/tasks/"
ATTEMPT_REFS = "refs/ralph/attempts/"
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "ralph",
    "GIT_AUTHOR_EMAIL": "ralph@localhost",
    "GIT_COMMITTER_NAME": "ralph",
    "GIT_COMMITTER_EMAIL": "ralph@localhost",
}
# Markers of an operation a killed git (or agent) left half done, in a git dir.
IN_PROGRESS = {
    "rebase-merge": ("rebase", "--abort"),
    "rebase-apply": ("rebase", "--abort"),
    "MERGE_HEAD": ("merge", "--abort"),
    "CHERRY_PICK_HEAD": ("cherry-pick", "--abort"),
    "REVERT_HEAD": ("revert", "--abort"),
}


class RefRaceError(Exception):
    """A ref transaction was refused: a ref was not where we expected (or already existed)."""


class RefRefusedError(RefRaceError):
    """git refused a ref transaction for a reason that is not a race (an invalid ref name, an
    unwritable repository): trying again at once cannot help, so it is an attempt that failed.
    A RefRaceError still, so whoever undoes a half-moved checkout on a race does it here too."""


# What git prints when a ref was not where the transaction expected it (another process moved
# or created it) or another git held its lock for a moment: a race, worth looking again.
_RACE_MARKS = (
    "but expected",
    "reference already exists",
    "reference is missing",
    "unable to resolve reference",
    "File exists",
)


class PushFailedError(Exception):
    """The remote refused a push for a reason other than a race, or could not be reached."""


@dataclass(frozen=True)
class Change:
    """One path a task changes: its status letter (A, M, D, T) and path."""

    code: str
    path: str


def task_ref(task_id: str) -> str:
    return TASK_REFS + task_id


def attempt_ref(task_id: str, attempt: int) -> str:
    return f"{ATTEMPT_REFS}{task_id}/{attempt}"


def git_env(root: Path, ralph_dir: Path, **config: str) -> dict[str, str]:
    """The environment ralph's git commands run with: never prompt, never open an editor, an
    identity when the repository has none (commit-tree refuses to run without one), the hooks
    the repository had when ralph started (see `hooks_snapshot`; the copy is kept under
    `ralph_dir`, the repository's `.ralph/`), and `config` (key: value)
    for ralph's own commands only, never written to the user's config. Replace refs are
    ignored: a `git replace` (an agent's) must not change what ralph sees of history."""
    env = {"GIT_EDITOR": "true", "GIT_TERMINAL_PROMPT": "0", "GIT_MERGE_AUTOEDIT": "no"}
    env["GIT_NO_REPLACE_OBJECTS"] = "1"
    identity = os.environ.get("GIT_AUTHOR_EMAIL") or os.environ.get("EMAIL")
    if not identity and not _configured_email(root.resolve()):
        env.update(FALLBACK_IDENTITY)
    pairs = {"core.hooksPath": str(hooks_snapshot(root, ralph_dir)), **config}
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for n, (key, value) in enumerate(pairs.items()):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    return env


@functools.cache
def _configured_email(root: Path) -> str:
    """The repository's user.email ("" if none), read once per process like the hooks."""
    try:
        return str(git.Git(str(root)).config("--get", "user.email"))
    except GitCommandError:
        return ""


_SNAPSHOTS: dict[Path, Path] = {}


def hooks_snapshot(root: Path, ralph_dir: Path) -> Path:
    """A copy of the repository's hooks as they are when ralph starts, which ralph's own git
    commands use: a hook an agent installs (in `.git/hooks`, shared by every worktree, or
    through `core.hooksPath`) never runs for ralph, not even while another worker's agent is
    still running. One copy per content (under `ralph_dir/hooks`), made once per process."""
    root = root.resolve()
    if root in _SNAPSHOTS:
        return _SNAPSHOTS[root]

    try:
        out = git.Git(str(root)).rev_parse("--path-format=absolute", "--git-path", "hooks")
        source = Path(out)
    except GitCommandError:
        source = root / ".git" / "hooks"
    hooks = (
        sorted(p for p in source.iterdir() if p.is_file() and not p.name.endswith(".sample"))
        if source.is_dir()
        else []
    )
    digest = hashlib.sha256()
    for hook in hooks:
        digest.update(hook.name.encode() + b"\0" + hook.read_bytes() + b"\0")
    dest = ralph_dir / "hooks" / digest.hexdigest()[:16]
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".new-", dir=dest.parent))
        for hook in hooks:
            shutil.copy2(hook, staging / hook.name)
        try:
            staging.rename(dest)
        except OSError:  # another process made the same copy first
            shutil.rmtree(staging, ignore_errors=True)
    _SNAPSHOTS[root] = dest
    return dest


class Git:
    """A working tree (or the main checkout) driven through the git binary."""

    def __init__(self, path: Path, env: dict[str, str]):
        self.path = path
        self.g = git.Git(str(path))
        self.g.update_environment(**env)

    def __call__(self, *args: str, **kwargs: object) -> str:
        return self.g.execute(["git", *args], **kwargs)  # type: ignore[call-overload,no-any-return]

    # -- reading -------------------------------------------------------------------------
    def rev(self, ref: str) -> str | None:
        """The commit `ref` names, or None. Plain refs (HEAD, refs/...) are read from git's
        files without starting a process: a task reads a handful, and each git start costs
        about a millisecond."""
        if ref == "HEAD" or ref.startswith("refs/"):
            try:
                return self.read_ref(ref)
            except OSError:
                pass  # anything unusual: ask git
        try:
            return self("rev-parse", "--verify", "-q", f"{ref}^{{commit}}")
        except GitCommandError:
            return None

    def read_ref(self, name: str) -> str | None:
        """A ref's value from its loose file or packed-refs, following symbolic refs. git
        replaces ref files by rename, so a read sees the old value or the new one."""
        for _ in range(5):
            per_worktree = name == "HEAD" or name.startswith(("refs/worktree/", "refs/bisect/"))
            folder = self.git_dir() if per_worktree else self.common_dir()
            try:
                text = (folder / name).read_text().strip()
            except FileNotFoundError:
                return self._packed_ref(name)
            if text.startswith("ref: "):
                name = text[5:].strip()
                continue
            if len(text) not in (40, 64):
                raise OSError(f"unexpected content in {folder / name}")
            return text
        raise OSError(f"symbolic ref loop at {name}")

    def _packed_ref(self, name: str) -> str | None:
        try:
            packed = (self.common_dir() / "packed-refs").read_text()
        except FileNotFoundError:
            return None
        suffix = " " + name
        for line in packed.splitlines():
            if line.endswith(suffix) and not line.startswith(("#", "^")):
                return line.split(" ", 1)[0]
        return None

    def tree_of(self, ref: str) -> str:
        return self("rev-parse", f"{ref}^{{tree}}")

    def is_ancestor(self, a: str, b: str) -> bool:
        try:
            self("merge-base", "--is-ancestor", a, b)
            return True
        except GitCommandError:
            return False

    def head_ref(self) -> str | None:
        """The branch HEAD points at (`refs/heads/x`), or None when detached."""
        try:
            text = (self.git_dir() / "HEAD").read_text().strip()
            return text[5:].strip() if text.startswith("ref: ") else None
        except OSError:
            pass
        try:
            return self("symbolic-ref", "-q", "HEAD")
        except GitCommandError:
            return None

    def git_dir(self) -> Path:
        return self._dirs[0]

    def common_dir(self) -> Path:
        return self._dirs[1]

    @functools.cached_property
    def _dirs(self) -> tuple[Path, Path]:
        """The git dir and the common dir, asked once and in one git process."""
        out = self("rev-parse", "--path-format=absolute", "--absolute-git-dir", "--git-common-dir")
        git_dir, common = out.splitlines()
        return Path(git_dir), Path(common)

    def subjects(self, base: str, tip: str, limit: int = 20) -> list[str]:
        """Subjects of the commits in base..tip, oldest first (an agent's own commits)."""
        out = self("log", "--reverse", f"--max-count={limit}", "--format=%s", f"{base}..{tip}")
        return [line for line in out.splitlines() if line.strip()]

    # -- staging and committing ----------------------------------------------------------
    def stage_all(self, exclude: Iterable[str] = ()) -> None:
        """Stage every change in the working tree except `.ralph/` (one scan of the tree)."""
        # A glob, not `:(exclude,literal).ralph`: a project whose .gitignore lists `.ralph`
        # makes `git add` exit 1 on a literal pathspec naming an ignored path.
        spec = [".", f":(exclude,glob)[{RALPH_DIR[0]}]{RALPH_DIR[1:]}/**"]
        spec += [f":(exclude,literal){p}" for p in exclude]
        self("add", "-A", "--", *spec)

    def staged(self, base: str) -> list[Change]:
        """What the index changes against `base` (no rename detection: exact paths)."""
        out = self("diff", "--cached", "--no-renames", "--name-status", "-z", base)
        parts = out.split("\0")
        changes = [
            Change(parts[i][:1], parts[i + 1]) for i in range(0, len(parts) - 1, 2) if parts[i]
        ]
        ours = [c for c in changes if c.path == RALPH_DIR or c.path.startswith(RALPH_DIR + "/")]
        if ours:  # force-added by the agent: never committed
            self("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", RALPH_DIR)
            changes = [c for c in changes if c not in ours]
        return changes

    def write_tree(self) -> str:
        return self("write-tree")

    def commit_tree(self, tree: str, parents: list[str], message: str) -> str:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self(*args, "-m", message)

    def update_refs(self, lines: list[str], scratch: Path) -> None:
        """Apply `update-ref --stdin` lines as one transaction; RefRaceError when refused."""
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=scratch) as fh:
            fh.write(("\n".join(lines) + "\n").encode())
            fh.seek(0)
            try:
                self("update-ref", "--stdin", "-m", "ralph", istream=fh)
            except GitCommandError as exc:
                text = f"{exc.stderr}\n{exc.stdout}"
                if any(mark in text for mark in _RACE_MARKS) or self._moved(lines):
                    raise RefRaceError(first_line(exc)) from None
                raise RefRefusedError(f"git refused to move the refs: {first_line(exc)}") from None

    def _moved(self, lines: list[str]) -> bool:
        """Whether a ref of these `update-ref --stdin` lines is no longer where they expect it
        (whatever git's message said): then the refusal was a race."""
        for line in lines:
            verb, ref, *values = line.split()
            with contextlib.suppress(OSError, GitCommandError):
                now = self.rev(ref)
                if verb == "create" and now is not None:
                    return True
                if verb == "update" and len(values) == 2 and now != values[1]:
                    return True
        return False

    def clear_stale_ref_locks(self, refs: Iterable[str], older_than: float = 5.0) -> list[str]:
        """Remove `<ref>.lock`, `packed-refs.lock` and `HEAD.lock` files older than
        `older_than` seconds: a git killed inside a ref transaction leaves them (moving the
        checked-out branch locks HEAD too, for its reflog), and every later move of that ref
        fails with "Another git process seems to be running" until they go. A live git holds
        them for milliseconds. Call with the merge lock held; returns what was removed."""

        common = self.common_dir()
        removed = []
        for name in [*refs, "packed-refs", "HEAD"]:
            lock = common / f"{name}.lock"
            try:
                if time.time() - lock.stat().st_mtime > older_than:
                    lock.unlink()
                    removed.append(str(lock))
            except OSError:
                continue
        return removed

    def clear_stale_index_lock(self, min_age: float = 2.0, blind_age: float = 60.0) -> str:
        """Remove this checkout's `index.lock` when no live git holds it: older than `min_age`
        seconds, open in no process, and no git process working in this repository (git may
        close the lock file while it holds it), or, past `blind_age` seconds, open in no
        process (a pager left open, a stuck command). Without /proc, `blind_age` alone decides.
        Returns why the lock stays, or ''."""

        lock = self.git_dir() / "index.lock"
        try:
            st = lock.stat()
        except FileNotFoundError:
            return ""
        age = time.time() - st.st_mtime
        if Path("/proc/self/fd").is_dir():
            opened, git_running = _lock_holders(lock, self.path)
        else:
            opened, git_running = "", "unknown"
        holder = opened or (git_running if age < blind_age else "")
        if holder or age < min_age:
            return f"another git command holds its index lock ({holder or 'just taken'})"
        with contextlib.suppress(OSError):
            if lock.stat().st_ino == st.st_ino:  # not a lock taken since we looked
                lock.unlink()
        return ""

    def index_damage(self, *, quick: bool = False) -> str:
        """Why git cannot read this checkout's index, else '': what a process that opened the
        index lock while a git held it (truncating it) leaves once that git renames the lock.
        `quick` reads only the file's header, without starting git."""
        index = self.git_dir() / "index"
        if quick:
            try:
                with index.open("rb") as f:
                    header = f.read(32)
            except FileNotFoundError:
                return ""
            return "" if len(header) == 32 and header[:4] == b"DIRC" else "a truncated file"
        try:
            self("ls-files", "--", ":(exclude)*")  # reads the whole index, lists nothing
            return ""
        except GitCommandError as exc:
            why = str(exc.stderr or "").strip().removeprefix("stderr: ").strip("'\n ")
            return why.removeprefix("fatal: ") if INDEX_DAMAGE.search(why) else ""

    def rebuild_index(self, commit: str, why: str) -> str:
        """A new index at `commit` (the commit the files are at) in place of a damaged one,
        kept as `index.damaged` in the git dir; the files are untouched, what was staged is
        unstaged. Returns the line that says so."""
        index = self.git_dir() / "index"
        os.replace(index, index.with_name("index.damaged"))
        self("read-tree", commit)
        return f"git could not read the index of {self.path} ({why}): rebuilt it from {commit[:10]}"

    def landed(self, task_id: str, target: str) -> str | None:
        """The task's commit, if its ref exists and the target holds it. A ref the target does
        not hold is what a git killed inside a landing's ref transaction can leave."""
        sha = self.rev(task_ref(task_id))
        return sha if sha and self.is_ancestor(sha, target) else None

    def landed_all(self, target: str) -> dict[str, str]:
        """Every task whose ref exists and whose commit the target holds: {task id: sha}."""
        out = self(
            "for-each-ref", "--merged", target, "--format=%(refname) %(objectname)", TASK_REFS
        )
        found = {}
        for line in out.splitlines():
            ref, _, sha = line.partition(" ")
            found[ref.removeprefix(TASK_REFS)] = sha
        return found

    def repair_task_ref(self, task_id: str, target: str, older_than: float = 5.0) -> str:
        """Finish or undo what a git killed inside a landing's ref transaction left for this
        task (call with the merge lock held): its stale ref lock is rolled forward when the
        target holds the commit in it, and a ref the target does not hold is deleted. Returns
        what was done, or ''."""

        ref = task_ref(task_id)
        lock = self.common_dir() / f"{ref}.lock"
        done = ""
        try:
            stale = time.time() - lock.stat().st_mtime > older_than
        except OSError:
            stale = False
        if stale:
            sha = lock.read_text().strip()
            lock.unlink(missing_ok=True)
            if sha and self.rev(ref) is None and self.rev(sha) and self.is_ancestor(sha, target):
                self("update-ref", ref, sha, "")
                done = f"{ref} created from the lock a killed landing left"
        sha = self.rev(ref)
        if sha and not self.is_ancestor(sha, target):
            self("update-ref", "-d", ref, sha)
            done = f"{ref} deleted: {target} does not hold {sha[:10]} (a torn landing)"
        return done

    def merge_tree(self, ours: str, theirs: str) -> tuple[str | None, list[str]]:
        """Merge two commits without a working tree: (tree, []) or (None, conflicted files)."""
        try:
            out = self("merge-tree", "--write-tree", "--no-messages", "--name-only", ours, theirs)
        except GitCommandError as exc:
            if exc.status != 1:
                raise
            lines = str(exc.stdout).replace("stdout: ", "").strip(" '\n").splitlines()
            return None, sorted({line for line in lines[1:] if line.strip()})
        return out.splitlines()[0], []

    # -- cleaning ------------------------------------------------------------------------
    def settle(self) -> None:
        """Abort anything half done (rebase, merge, cherry-pick) and drop a stale index.lock
        (and, in a worker's own worktree, the HEAD.lock a killed `update-ref HEAD` left)."""
        gitdir = self.git_dir()
        (gitdir / "index.lock").unlink(missing_ok=True)
        if gitdir.resolve() != self.common_dir().resolve():
            (gitdir / "HEAD.lock").unlink(missing_ok=True)
        for marker, (command, flag) in IN_PROGRESS.items():
            if (gitdir / marker).exists():
                try:
                    self(command, flag)
                except GitCommandError:
                    target = gitdir / marker
                    if target.is_dir():
                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        target.unlink(missing_ok=True)

    def reset_hard(self, commit: str, *, keep_ralph_dir: bool = True) -> None:
        """HEAD, index and tracked files exactly at `commit`; untracked files removed (ignored
        ones are kept: a user's virtualenv or node_modules is not ours to delete). `.ralph/` is
        kept in the main checkout (the store lives there), not in a worker's worktree."""
        self.settle()
        self("reset", "-q", "--hard", commit)
        self("clean", "-ffdq", *(["-e", RALPH_DIR] if keep_ralph_dir else []))

    def save_patch(self, base: str, dest: Path) -> bool:
        """Write the working tree's difference from `base` (new files included) as a binary
        patch; False when there is none."""
        self.stage_all()
        patch = self("diff", "--cached", "--binary", base, stdout_as_string=False)
        if not patch:
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(patch + b"\n")  # type: ignore[operator]
        return True


def _lock_holders(lock: Path, root: Path) -> tuple[str, str]:
    """(a process that has `lock` open, a git process working under `root`), '' for none;
    the second is 'unknown' when some process could not be looked at."""
    root_s, lock_s = str(root.resolve()), str(lock)
    opened, running = "", ""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            comm = (proc / "comm").read_text().strip()
            if comm.startswith("git") and not running:
                cwd = os.readlink(proc / "cwd")
                if cwd == root_s or cwd.startswith(root_s + os.sep):
                    running = f"{comm} pid {proc.name}"
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == lock_s:
                        return f"{comm} pid {proc.name}", running
        except FileNotFoundError:
            continue  # ended meanwhile
        except OSError:
            running = running or "unknown"
    return opened, running


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (an OSError, a failed git, a store error) says the disk is full."""

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = f"{exc} {getattr(exc, 'stderr', '')}"
    return "No space left on device" in text or "disk is full" in text or "Disk quota" in text


def first_line(exc: GitCommandError) -> str:
    text = str(exc.stderr or exc.stdout or exc).strip().strip("'").strip()
    for line in text.splitlines():
        line = line.strip().strip("'")
        if line and not line.startswith(("stderr:", "stdout:")):
            return line
    return text.splitlines()[-1] if text else "git failed"


def repo_root(start: Path) -> Path:
    """The top of the working tree holding `start`; WorkspaceError outside a repository."""

    try:
        found = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise WorkspaceError(
            f"{start} is not inside a git repository",
            hint="run `git init` there, or run ralph from your repository",
        ) from exc
    try:
        if found.bare or not found.working_tree_dir:
            raise WorkspaceError(f"{start} is a bare git repository: ralph needs a working tree")
        return Path(found.working_tree_dir)
    finally:
        found.close()
