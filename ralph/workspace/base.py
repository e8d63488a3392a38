"""What every workspace does: a clean start at the task's base, collecting whatever the agent
left (however it got there), and keeping a failed attempt's work without committing it.

A workspace only does git. It never calls the store: the worker hands it a `fence` (raises
LeaseLostError when the claim is no longer ours) to call right before the target moves.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ralph.workspace.git import (
    ATTEMPT_REFS,
    Change,
    Git,
    attempt_ref,
    git_env,
)

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


@dataclass
class Landing:
    status: LandStatus
    commit: str | None = None
    note: str = ""
    files: list[str] = field(default_factory=list)


class GuardedFiles:
    """Git's own settings an agent must not change for ralph: hooks and config files.

    Snapshot before the agent, put back after it. ralph's commits use plumbing and run no
    commit hook, but `update-ref` runs `reference-transaction`, and config (hooksPath,
    gpgsign, ...) would change later commands.
    """

    def __init__(self, g: Git):
        common, own = g.common_dir(), g.git_dir()  # cached by `g`: no git process per task
        self.files = [common / "config", own / "config.worktree", common / "config.worktree"]
        self.hook_dirs = [common / "hooks"]
        self.saved: dict[Path, bytes | None] = {}

    def _paths(self) -> list[Path]:
        found = list(dict.fromkeys(self.files))
        for folder in self.hook_dirs:
            if folder.is_dir():
                found += [p for p in sorted(folder.iterdir()) if not p.name.endswith(".sample")]
        return found

    def snapshot(self) -> None:
        self.saved = {p: _read(p) for p in self._paths()}

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
                path.write_bytes(before)
                if mode is not None:
                    os.chmod(path, mode)
        for path, before in self.saved.items():  # deleted by the agent
            if before is not None and not path.exists():
                put_back.append(str(path))
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


class GitWorkspace:
    """The part of every workspace that is the same: collect, keep, discard, look up."""

    root: Path  # the repository (where .ralph/ lives)
    path: Path  # where the agent works
    target: str
    # Where a sandboxed agent left HEAD (its own git dir, ralph/sandbox/gitview.py); None: the
    # workspace's HEAD is the agent's.
    agent_head: Callable[[], str | None] | None = None

    def __init__(self, root: Path, path: Path, target: str):
        self.root, self.path, self.target = root, path, target
        self.env = git_env(root)
        self.scratch = root / ".ralph" / "tmp"
        self._guard: GuardedFiles | None = None
        self._guarding = False
        self.base: str | None = None
        self.git = Git(path, self.env)
        self.main = Git(root, self.env)

    def landed(self, task_id: str) -> str | None:
        """The commit that completed `task_id` on the target, if one landed (any process)."""
        return self.main.landed(task_id, f"refs/heads/{self.target}")

    def landed_all(self) -> dict[str, str]:
        """Every task whose commit landed: {task id: sha} (the run-start reconcile)."""
        return self.main.landed_all(f"refs/heads/{self.target}")

    def guard(self) -> None:
        """Remember hooks and git config before an agent runs (see GuardedFiles)."""
        if self._guard is None:
            self._guard = GuardedFiles(self.git)
        self._guard.snapshot()
        self._guarding = True

    def _unguard(self) -> list[str]:
        if self._guard is None or not self._guarding:
            return []
        self._guarding = False
        return [f"put back {p} (changed by the agent)" for p in self._guard.restore()]

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

    def collect(self, task_id: str, attempt: int, base: str) -> Collected:
        """Everything that changed from `base` to the end of the agent's run, staged as one tree:
        its own commits (kept under an attempt ref), `git mv`/`git rm`, uncommitted files."""
        g = self.git
        repairs = self._unguard()
        g.settle()
        head = self._agent_head(g)
        kept = self._keep_agent_commits(g, task_id, attempt, base, head)
        subjects = g.subjects(base, head) if kept and head and g.is_ancestor(base, head) else []
        if kept:
            self._point_head_back(g, base)
            repairs.append(f"the agent moved HEAD to {head[:10] if head else '?'}; kept as {kept}")
        theirs = set(self.excluded())
        g.stage_all(theirs)
        changes = [c for c in g.staged(base) if c.path not in theirs]
        tree = g.write_tree()
        return Collected(base, tree, changes, subjects, kept, repairs)

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
