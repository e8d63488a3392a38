"""What every workspace does: a clean start at the task's base, collecting whatever the agent
left (however it got there), and keeping a failed attempt's work without committing it.

A workspace only does git. It never calls the store: the worker hands it a `fence` (raises
LeaseLostError when the claim is no longer ours) to call right before the target moves.

Git's side doors an agent can hide or undo work through, and what collect does about each:
- Commits: the agent runs with a committer identity naming its attempt (`agent_env`), so its
  own commits are told from anyone else's. Only the agent's commits are squashed into the
  task's commit; a commit that is not the agent's is never moved off the target.
- `.git/info/exclude` (shared by every worktree) is put back like hooks and config, and the
  work is staged with ralph's own ignore rules (the file as it was when the run started), so an
  agent cannot make its own or another worker's new files invisible.
- An ignore rule the agent wrote into a `.gitignore` that hides all its work: the attempt fails
  with a note naming the hidden files (never `done (no_changes)`).
- `git stash`: the agent's stash entries are taken back out of the user's `refs/stash` (which is
  put back as it was), kept under `refs/ralph/attempts/<task>/<n>-stash`, and the attempt fails
  with a note: a stash is a place to hide work, not a result.
- `git replace` refs the agent made are taken back (kept under an attempt ref), and ralph's own
  git commands ignore replace refs (GIT_NO_REPLACE_OBJECTS), so history looks to ralph as it is.
- History rewound (`git reset --hard HEAD~1`, HEAD no longer contains the task's base): the
  attempt fails with "the agent rewound history"; its HEAD is kept under the attempt ref and the
  target goes back to the base, so a task commit never reverts what was on the target before.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from git.exc import GitCommandError

from ralph.workspace.git import (
    ATTEMPT_REFS,
    RALPH_DIR,
    Change,
    Git,
    attempt_ref,
    git_env,
)

STASH = "refs/stash"
REPLACE = "refs/replace/"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

Fence = Callable[[], None]
Reverify = Callable[[Path], str | None]  # runs verify in a folder; the failure note, or None

LandStatus = Literal[
    "landed",  # the target holds the task's commit (`commit`)
    "already",  # the task's commit was already on the target (`commit`): ours is dropped
    "empty",  # after the rebase the task adds nothing
    "conflict",  # the target changed the same lines meanwhile (`files`)
    "moved",  # the target moved under a single checkout; retry from the new head
    "verify_failed",  # the rebased result failed the verify commands (`note`)
    "push_failed",  # the remote refused or could not be reached
    "interrupted",  # the run stopped while waiting to land
]


@dataclass
class Collected:
    """The agent's result: one tree on `base`, and what it did to get there."""

    base: str
    tree: str
    changes: list[Change]
    subjects: list[str] = field(default_factory=list)  # the agent's own commit subjects
    kept: str | None = None  # refs/ralph/attempts/<task>/<n> when the agent committed
    repairs: list[str] = field(default_factory=list)  # what ralph put back (hooks, HEAD)
    refused: str | None = None  # why the attempt fails though the agent exited 0 (a side door)
    refused_as: str = "agent_error"  # the outcome it fails with


@dataclass
class Landing:
    status: LandStatus
    commit: str | None = None
    note: str = ""
    files: list[str] = field(default_factory=list)


class GuardedFiles:
    """Git's own settings an agent must not change for ralph: hooks, config files and
    `info/exclude`.

    Snapshot before the agent, put back after it. ralph's commits use plumbing and run no
    commit hook, but `update-ref` runs `reference-transaction`, config (hooksPath,
    gpgsign, ...) would change later commands, and `info/exclude` hides new files from staging.
    Files of the common git dir are shared by every worktree: with `shared` (one dict for all
    the workers of a run), their snapshot is the one taken at the run's first guard, so one
    worker never "restores" what another worker's agent had changed when it looked.
    """

    def __init__(self, g: Git, shared: dict[Path, bytes | None] | None = None):
        common, own = g.common_dir(), g.git_dir()  # cached by `g`: no git process per task
        self.exclude = common / "info" / "exclude"
        self.own_file = own / "config.worktree"
        self.files = [common / "config", self.own_file, common / "config.worktree", self.exclude]
        self.hook_dirs = [common / "hooks"]
        self.shared = shared
        self.saved: dict[Path, bytes | None] = {}

    def _paths(self) -> list[Path]:
        found = list(dict.fromkeys(self.files))
        for folder in self.hook_dirs:
            if folder.is_dir():
                found += [p for p in sorted(folder.iterdir()) if not p.name.endswith(".sample")]
        return found

    def snapshot(self) -> None:
        now = {p: _read(p) for p in self._paths()}
        if self.shared is None:
            self.saved = now
            return
        if not self.shared:  # the run's first guard: the common files as the run found them
            self.shared.update({p: v for p, v in now.items() if p != self.own_file})
        common = {p: self.shared.get(p) for p in now if p != self.own_file}
        self.saved = {**common, **self.shared, self.own_file: now.get(self.own_file)}

    def rules(self) -> bytes | None:
        """`info/exclude` as ralph stages with it: as it was before the agent (or the run)."""
        return self.saved.get(self.exclude)

    def restore(self) -> list[str]:
        """Put back what changed; returns what was put back, for the attempt's log."""
        put_back = []
        for path in self._paths():
            before = self.saved.get(path)
            if _read(path) == before:
                continue
            put_back.append(str(path))
            if before is None:
                with contextlib.suppress(OSError):
                    path.unlink()
            else:
                mode = self._mode(path)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(before)
                if mode is not None:
                    os.chmod(path, mode)
        for path, before in self.saved.items():  # deleted by the agent
            if before is not None and not path.exists():
                put_back.append(str(path))
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(before)
        return put_back

    @staticmethod
    def _mode(path: Path) -> int | None:
        try:
            return path.stat().st_mode & 0o777
        except OSError:
            return None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _replace_refs(common: Path) -> dict[str, str]:
    """refs/replace/* and their values, read from git's files (no git process per task)."""
    found = {}
    with contextlib.suppress(OSError):
        for line in (common / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name.startswith(REPLACE):
                found[name] = sha
    folder = common / REPLACE
    if folder.is_dir():
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.endswith(".lock"):
                with contextlib.suppress(OSError):
                    found[path.relative_to(common).as_posix()] = path.read_text().strip()
    return found


def _global_rules(g: Git) -> list[Path]:
    """The user's global ignore file (core.excludesFile, or git's XDG default), if any."""
    found = None
    with contextlib.suppress(GitCommandError):
        found = g("config", "--path", "--get", "core.excludesFile")
    if not found:
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        found = str(Path(xdg) / "git" / "ignore")
    return [Path(found)] if Path(found).is_file() else []


class GitWorkspace:
    """The part of every workspace that is the same: collect, keep, discard, look up."""

    root: Path  # the repository
    ralph_dir: Path  # its .ralph/, handed in by the caller (scratch files, locks, hooks copy)
    path: Path  # where the agent works
    target: str
    # Where a sandboxed agent left HEAD (its own git dir, ralph/sandbox/gitview.py); None: the
    # workspace's HEAD is the agent's.
    agent_head: Callable[[], str | None] | None = None

    def __init__(self, root: Path, path: Path, target: str, ralph_dir: Path):
        self.root, self.path, self.target, self.ralph_dir = root, path, target, ralph_dir
        self.env = git_env(root, ralph_dir)
        self.scratch = ralph_dir / "tmp"
        self._guard: GuardedFiles | None = None
        self._guarding = False
        self.shared_guard: dict[Path, bytes | None] | None = None  # one per run (worktrees)
        self._started = 0.0
        self._stash_before: str | None = None
        self.committer = ""  # the attempt's committer marker (agent_env)
        self._replaced: dict[str, str] = {}  # refs/replace/* before the agent
        self.base: str | None = None
        self.git = Git(path, self.env)
        self.main = Git(root, self.env)

    def landed(self, task_id: str) -> str | None:
        """The commit that completed `task_id` on the target, if one landed (any process)."""
        return self.main.landed(task_id, f"refs/heads/{self.target}")

    def landed_all(self) -> dict[str, str]:
        """Every task whose commit landed: {task id: sha} (the run-start reconcile)."""
        return self.main.landed_all(f"refs/heads/{self.target}")

    def guard(self, task_id: str = "", attempt: int = 0) -> None:
        """Remember hooks, git config, `info/exclude` and the stash before an agent runs, and
        give the attempt its committer marker (see GuardedFiles, agent_env)."""
        if self._guard is None:
            self._guard = GuardedFiles(self.git, self.shared_guard)
        self._guard.snapshot()
        self._guarding = True
        self._started = time.time()
        self._stash_before = self.git.rev(STASH)
        self._replaced = self._replace_baseline()
        name = _SAFE.sub("-", f"{task_id}.{attempt}").strip(".-") or "attempt"
        self.committer = f"{name}.{secrets.token_hex(4)}@attempt.ralph.invalid"

    def agent_env(self) -> dict[str, str]:
        """The committer identity the agent runs with: every commit (and stash) it makes
        carries the attempt's marker, so ralph tells its commits from a user's."""
        if not self.committer:
            return {}
        return {"GIT_COMMITTER_NAME": "ralph agent", "GIT_COMMITTER_EMAIL": self.committer}

    def _unguard(self) -> list[str]:
        if self._guard is None or not self._guarding:
            return []
        self._guarding = False
        return [f"put back {p} (changed by the agent)" for p in self._guard.restore()]

    def _foreign(self, g: Git, base: str, tip: str) -> list[str]:
        """Commits in base..tip that are not the agent's (their committer lacks its marker)."""
        out = g("log", "--format=%H %ce", f"{base}..{tip}")
        pairs = [line.split(" ", 1) for line in out.splitlines() if line.strip()]
        return [p[0] for p in pairs if len(p) < 2 or p[1] != self.committer]

    def _effective_base(self, g: Git, base: str, log: list[str]) -> str:
        """Where the attempt's result is taken from: the base (a single checkout moves it past
        commits that are not the agent's, which stay)."""
        return base

    def _agent_head(self, g: Git) -> str | None:
        """The commit the agent left HEAD at (from its sandbox git view when it had one)."""
        return self.agent_head() if self.agent_head is not None else g.rev("HEAD")

    def _point_head_back(self, g: Git, base: str) -> None:
        """Make HEAD what the workspace expects again, touching no file (subclasses say how)."""
        g("update-ref", "--no-deref", "HEAD", base)

    def _keep_agent_commits(
        self, g: Git, task_id: str, attempt: int, base: str, head: str | None
    ) -> str | None:
        """If the agent committed (or moved HEAD), keep its commits under an attempt ref."""
        if head is None or head == base:
            return None
        ref = attempt_ref(task_id, attempt)
        g("update-ref", ref, head)
        return ref

    def _replace_baseline(self) -> dict[str, str]:
        """The replace refs to keep: as they were before the agent (worktrees: the run)."""
        return _replace_refs(self.git.common_dir())

    def _take_back_replacements(self, g: Git, task_id: str, attempt: int) -> list[str]:
        """`git replace` refs made or moved while the agent ran (they change what history looks
        like to every git command): kept under an attempt ref, then put back as they were.
        Refs are shared by every worktree: with several workers, the first to look takes back
        whatever any agent did."""
        now = _replace_refs(g.common_dir())
        if now == self._replaced:
            return []
        put_back = []
        for name, sha in sorted(now.items()):
            if self._replaced.get(name) == sha:
                continue
            keep = f"{attempt_ref(task_id, attempt)}-replace-{name.rsplit('/', 1)[-1][:12]}"
            g("update-ref", keep, sha)
            before = self._replaced.get(name)
            g("update-ref", *([name, before] if before else ["-d", name]))
            put_back.append(f"put back {name} (a `git replace` made meanwhile; kept as {keep})")
        for name, sha in self._replaced.items():
            if name not in now:
                g("update-ref", name, sha)
                put_back.append(f"put back {name} (deleted by the agent)")
        return put_back

    def _take_back_stash(self, g: Git, task_id: str, attempt: int) -> str | None:
        """The agent's own `git stash` entries: kept under an attempt ref and dropped from the
        user's stash (as it was before); returns the failure note, or None."""
        if not self.committer or g.rev(STASH) == self._stash_before:
            return None
        out = g("log", "-g", "--format=%gd %H %ce", STASH)
        entries = [line.split(" ") for line in out.splitlines() if line.count(" ") == 2]
        ours = [(sel, sha) for sel, sha, email in entries if email == self.committer]
        if not ours:
            return None
        kept = []
        for n, (_, sha) in enumerate(ours):
            ref = f"{attempt_ref(task_id, attempt)}-stash" + (f"-{n + 1}" if n else "")
            g("update-ref", ref, sha)
            kept.append(ref)
        for sel, _ in reversed(ours):  # the oldest first: the newer selectors stay valid
            g("stash", "drop", "-q", sel)
        return (
            f"the agent put its work away with `git stash` (kept as {', '.join(kept)}; the "
            "stash is back as it was): leave the work in the working tree, never stash it"
        )

    def collect(self, task_id: str, attempt: int, base: str) -> Collected:
        """Everything that changed from `base` to the end of the agent's run, staged as one tree:
        its own commits (kept under an attempt ref), `git mv`/`git rm`, uncommitted files.
        `refused` says why the attempt fails anyway (a side door: see the module docstring)."""
        g = self.git
        repairs = self._unguard()
        g.settle()
        if damage := g.index_damage(quick=True):
            repairs.append(g.rebuild_index("HEAD", damage))
        repairs += self._take_back_replacements(g, task_id, attempt)
        refused = self._take_back_stash(g, task_id, attempt)
        base = self.base = self._effective_base(g, base, repairs)
        head = self._agent_head(g)
        rewound = head is not None and head != base and not g.is_ancestor(base, head)
        kept = self._keep_agent_commits(g, task_id, attempt, base, head)
        subjects = g.subjects(base, head) if kept and head and not rewound else []
        if kept:
            self._point_head_back(g, base)
            repairs.append(f"the agent moved HEAD to {head[:10] if head else '?'}; kept as {kept}")
        if rewound and head:
            refused = refused or (
                f"the agent rewound history: its HEAD {head[:10]} no longer contains the "
                f"task's base {base[:10]} (kept as {kept}; {self.target} is not moved back): "
                "never reset or rebase away commits, add to them"
            )
        theirs = set(self.excluded())
        g.stage_all(theirs)
        self._stage_with_own_rules(g, theirs)
        changes = [c for c in g.staged(base) if c.path not in theirs]
        tree = g.write_tree()
        return Collected(base, tree, changes, subjects, kept, repairs, refused)

    def _stage_with_own_rules(self, g: Git, theirs: set[str]) -> None:
        """When `info/exclude` is not what ralph stages with (another worker's agent is
        changing it right now), also stage the new files only that change hides."""
        if self._guard is None or _read(self._guard.exclude) == self._guard.rules():
            return
        self.scratch.mkdir(parents=True, exist_ok=True)
        rules = self.scratch / f"exclude-{os.getpid()}-{threading.get_ident()}"
        rules.write_bytes(self._guard.rules() or b"")
        try:
            args = ["ls-files", "-z", "-o", "--exclude-per-directory=.gitignore"]
            args += [f"--exclude-from={rules}"] + [f"--exclude-from={p}" for p in _global_rules(g)]
            out = g(*args, "--", ".", f":(exclude){RALPH_DIR}")
        finally:
            rules.unlink(missing_ok=True)
        hidden = [p for p in out.split("\0") if p and p not in theirs]
        for start in range(0, len(hidden), 500):
            g("--literal-pathspecs", "add", "-f", "--", *hidden[start : start + 500])

    def hidden_work(self, base: str) -> str | None:
        """For an attempt that changed nothing visible: the files it wrote that ignore rules the
        user did not have (a `.gitignore` the agent wrote, another agent's `info/exclude`) hide;
        the failure note naming them, or None. Files the user's own rules ignore (caches,
        build output) are not the agent's work."""
        g = self.git
        spec = ["--", ".", f":(exclude){RALPH_DIR}"]
        out = g("ls-files", "-z", "-o", "-i", "--exclude-standard", *spec)
        new = [p for p in out.split("\0") if p and _mtime(self.path / p) >= self._started][:200]
        if not new:
            return None
        self.scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.scratch) as fh:
            fh.write("\0".join(new).encode() + b"\0")
            fh.seek(0)
            try:
                found = g("check-ignore", "-v", "-z", "--stdin", istream=fh).split("\0")
            except GitCommandError:
                return None
        hidden: dict[str, str] = {}
        for n in range(0, len(found) - 3, 4):
            source, path = found[n], found[n + 3]
            if not self._users_rule(g, base, source):
                hidden[path] = source
        if not hidden:
            return None
        names = ", ".join(sorted(hidden)[:5]) + (" ..." if len(hidden) > 5 else "")
        sources = ", ".join(sorted(set(hidden.values())))
        return (
            f"the agent's files are ignored by rules the user did not have ({sources}): {names}; "
            "ralph commits no ignored file, so remove the rule or keep the work elsewhere"
        )

    def _users_rule(self, g: Git, base: str, source: str) -> bool:
        """Whether an ignore rule's file is the user's: a `.gitignore` as it is in `base`, or
        `info/exclude` / the global file as the run found them."""
        if self._guard is not None and Path(source).name == "exclude" and "info" in source:
            return _read(self._guard.exclude) == self._guard.rules()
        if Path(source).is_absolute() or source.startswith(".git/"):
            return True
        try:
            was = g("cat-file", "blob", f"{base}:{source}", stdout_as_string=False)
        except GitCommandError:
            return False
        return _read(self.path / source) == was

    def excluded(self) -> list[str]:
        """Paths never staged (a single checkout's pre-existing changes under --allow-dirty)."""
        return []

    def discard(self, task_id: str, attempt: int, keep: Path) -> list[str]:
        """Keep the attempt's work (patch + attempt ref), then put the workspace back at its
        base. Returns what was kept, for the log."""
        g = self.git
        kept: list[str] = self._unguard()
        base = self.base or g.rev("HEAD")
        if base is None:
            return kept
        g.settle()
        if damage := g.index_damage(quick=True):
            kept.append(g.rebuild_index("HEAD", damage))
        kept += self._take_back_replacements(g, task_id, attempt)
        stash = self._take_back_stash(g, task_id, attempt)
        if stash:
            kept.append(stash)
        base = self.base = self._effective_base(g, base, kept)
        ref = self._keep_agent_commits(g, task_id, attempt, base, self._agent_head(g))
        if ref:
            kept.append(ref)
            self._point_head_back(g, base)
        if self.excluded():
            kept += self._discard_some(g, base, keep)
        else:
            if g.save_patch(base, keep):
                kept.append(str(keep))
            g.reset_hard(base, keep_ralph_dir=self.path == self.root)
        self.clear_marker()
        return kept

    def _discard_some(self, g: Git, base: str, keep: Path) -> list[str]:
        raise NotImplementedError

    def write_marker(self, data: dict[str, object]) -> None:
        marker = self.marker_path()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(data))

    def read_marker(self) -> dict[str, object] | None:
        try:
            return json.loads(self.marker_path().read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return None

    def clear_marker(self) -> None:
        self.marker_path().unlink(missing_ok=True)

    def marker_path(self) -> Path:
        raise NotImplementedError


__all__ = [
    "ATTEMPT_REFS",
    "Collected",
    "Fence",
    "GitWorkspace",
    "Landing",
    "Reverify",
]
