"""One worker in the repository's own checkout, on the target branch.

A marker file (`.ralph/checkout.json`) is written before an attempt touches the tree and removed
once the tree is clean again, so a later run can tell a killed attempt's leftovers (saved as a
patch, then cleaned) from the user's own uncommitted work (refused, or kept under --allow-dirty).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import tempfile
from pathlib import Path

from git.exc import GitCommandError

from ralph import reaper
from ralph.errors import WorkspaceError
from ralph.workspace.base import Collected, Fence, GitWorkspace, Landing, Reverify
from ralph.workspace.git import (
    Git,
    RefRaceError,
    RefRefusedError,
    attempt_ref,
    disk_full,
    task_ref,
)
from ralph.workspace.mergelock import LOCK_NAME, MergeLock

MARKER = "checkout.json"


class CheckoutWorkspace(GitWorkspace):
    """The agent works in the checkout; the task's commit moves the checked-out branch."""

    def __init__(
        self,
        root: Path,
        *,
        ralph_dir: Path,
        allow_dirty: bool = False,
        lock_timeout: float = 900.0,
    ):
        g = Git(root, {})
        branch = g.head_ref()
        if branch is None:
            raise WorkspaceError(
                f"HEAD of {root} is detached", hint="check out the branch tasks should land on"
            )
        if g.rev("HEAD") is None:
            raise WorkspaceError(f"{root} has no commits yet", hint="make a first commit")
        super().__init__(root, root, branch.removeprefix("refs/heads/"), ralph_dir)
        self.lock_timeout = lock_timeout
        self.leftovers = self.recover()
        dirty = self._dirty()
        if dirty and not allow_dirty:
            shown = ", ".join(dirty[:3]) + (" ..." if len(dirty) > 3 else "")
            raise WorkspaceError(
                f"the working tree of {root} has uncommitted changes ({shown})",
                hint="commit or stash them first, or pass --allow-dirty",
            )
        self.baseline = dirty

    def marker_path(self) -> Path:
        return self.ralph_dir / MARKER

    def _dirty(self) -> list[str]:
        out = self.git(
            "--no-optional-locks", "status", "--porcelain", "-z", "--untracked-files=all"
        )
        paths, entries, i = [], out.split("\0"), 0
        while i < len(entries):
            entry, i = entries[i], i + 1
            if len(entry) < 4:
                continue
            paths.append(entry[3:])
            if entry[0] in "RC":
                paths.append(entries[i])
                i += 1
        return [p for p in paths if not (p == ".ralph" or p.startswith(".ralph/"))]

    def recover(self) -> list[str]:
        """Clean up after an attempt that was killed in this checkout; returns what was kept.
        On a full disk the marker stays (nothing is cleaned before it is saved)."""
        try:
            return self._recover()
        except (OSError, GitCommandError) as exc:
            if not disk_full(exc):
                raise
            raise WorkspaceError(
                f"the disk is full: cannot save what the last attempt left in {self.root}",
                hint="free some space and run again",
            ) from exc

    def _recover(self) -> list[str]:
        marker = self.read_marker()
        if marker is None:
            return []
        pid = marker.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and reaper.alive(pid):
            raise WorkspaceError(
                f"another ralph run (pid {pid}) is working on {marker.get('task')} in {self.root}",
                hint="one run at a time works in the checkout: wait for it or stop it",
            )
        g = self.git
        self.target = str(marker.get("target") or self.target)  # the agent may have switched
        head_ref = f"refs/heads/{self.target}"
        if g.head_ref() != head_ref:
            g("symbolic-ref", "HEAD", head_ref)
        base = str(marker.get("base") or "")
        head = g.rev(head_ref) or base
        attempt_base = base if base and g.is_ancestor(base, head) else head
        task = str(marker.get("task") or "")
        if task and g.rev(task_ref(task)) == head:
            attempt_base = head  # killed right after its own landing: that commit stays
        keep = Path(str(marker.get("run_dir") or self.scratch)) / "leftovers.patch"
        kept: list[str] = []
        self.committer = str(marker.get("committer") or "")
        if head != attempt_base and self._foreign(g, attempt_base, head):
            attempt_base = head  # commits that are not the agent's stay on the target
        if not marker.get("allow_dirty"):
            if g.save_patch(attempt_base, keep):
                kept.append(str(keep))
            if head != attempt_base and marker.get("task"):  # the agent committed: as discard()
                ref = attempt_ref(str(marker["task"]), int(str(marker.get("attempt") or 0)))
                g("update-ref", ref, head)
                g("update-ref", head_ref, attempt_base, head)
                kept.append(ref)
                head = attempt_base
            g.reset_hard(head)
        self.clear_marker()
        return kept

    def excluded(self) -> list[str]:
        return self.baseline

    # -- the user's own paths under --allow-dirty --------------------------------------------
    def _userwork_dir(self) -> Path:
        return self.scratch / "userwork"

    def _snapshot_user(self) -> None:
        """Copy the user's dirty paths before an agent runs, to tell whether it changed them
        and to put their bytes back exactly if it did."""
        folder = self._userwork_dir()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        manifest: dict[str, dict[str, object]] = {}
        for n, path in enumerate(self.baseline):
            full = self.root / path
            if full.is_symlink():
                manifest[path] = {"link": os.readlink(full)}
            elif full.is_file():
                shutil.copy2(full, folder / str(n), follow_symlinks=False)
                manifest[path] = {"copy": str(n)}
            elif not full.exists():
                manifest[path] = {"absent": True}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        staged = []  # the user's index entries of those paths ("" where none)
        listed = self.git("--literal-pathspecs", "ls-files", "-s", "-z", "--", *self.baseline)
        entries = dict(reversed(e.split("\t", 1)) for e in listed.split("\0") if "\t" in e)
        for path in self.baseline:
            meta = entries.get(path, "")
            staged.append(f"{meta.split(' ')[0]} {meta.split(' ')[1]}\t{path}" if meta else path)
        (folder / "index.json").write_text(json.dumps(staged))

    def _restore_user_index(self, g: Git) -> None:
        """The user's staged entries of their own paths, as they were before the agent ran."""
        try:
            staged = json.loads((self._userwork_dir() / "index.json").read_text())
        except (OSError, ValueError):
            return
        zero = "0" * len(g.rev("HEAD") or "0" * 40)
        lines = [e if "\t" in e else f"0 {zero}\t{e}" for e in staged]
        if lines:
            self.scratch.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.scratch) as fh:
                fh.write(("\0".join(lines) + "\0").encode())
                fh.seek(0)
                g("update-index", "-z", "--index-info", istream=fh)

    def _user_manifest(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads((self._userwork_dir() / "manifest.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _user_paths_changed(self) -> list[str]:
        """The user's dirty paths whose bytes are not what they were before the agent ran."""
        folder, changed = self._userwork_dir(), []
        for path, saved in self._user_manifest().items():
            full = self.root / path
            if "link" in saved:
                same = full.is_symlink() and os.readlink(full) == saved["link"]
            elif "copy" in saved:
                same = (
                    full.is_file()
                    and not full.is_symlink()
                    and filecmp.cmp(full, folder / str(saved["copy"]), shallow=False)
                )
            else:
                same = not full.exists() and not full.is_symlink()
            if not same:
                changed.append(path)
        return changed

    def _restore_user(self, paths: list[str], keep: Path) -> list[str]:
        """Put the user's bytes back at `paths`; what was there goes beside `keep`."""
        folder, manifest, done = self._userwork_dir(), self._user_manifest(), []
        for path in paths:
            saved, full = manifest.get(path), self.root / path
            if saved is None:
                continue
            if full.is_file() and not full.is_symlink():
                copy = keep.parent / "agent-changed-user-paths" / path
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(full, copy)
            tmp = full.with_name(f".{full.name}.ralph-restore")
            tmp.unlink(missing_ok=True)
            if "link" in saved:
                os.symlink(str(saved["link"]), tmp)
            elif "copy" in saved:
                shutil.copy2(folder / str(saved["copy"]), tmp)
            else:
                full.unlink(missing_ok=True)
                done.append(f"put back {path} as you had it (deleted)")
                continue
            full.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, full)
            done.append(f"put back {path} as you had it (the agent had changed it)")
        return done

    def collect(self, task_id: str, attempt: int, base: str) -> Collected:
        """As every workspace; under --allow-dirty a result that changed one of the user's own
        dirty paths is refused (it would be mixed into the user's file and left out of the
        commit), naming the paths."""
        collected = super().collect(task_id, attempt, base)
        touched = self._user_paths_changed() if self.baseline else []
        if touched:
            shown = ", ".join(touched[:5]) + (" ..." if len(touched) > 5 else "")
            collected.refused = (
                f"the agent changed {shown}, which hold(s) the user's uncommitted changes "
                "(--allow-dirty): ralph never commits or mixes into those; leave them alone"
            )
            collected.refused_as = "user_work_touched"
        return collected

    def prepare(self, task_id: str, attempt: int, run_dir: Path) -> str:
        """The checkout on the target branch at its head, nothing else changed (but the user's
        own --allow-dirty paths)."""
        g = self.git
        head_ref = f"refs/heads/{self.target}"
        if g.head_ref() != head_ref:
            g("symbolic-ref", "HEAD", head_ref)
        base = g.rev(head_ref)
        assert base is not None
        if self.read_marker() is not None:  # an attempt of this run did not end cleanly
            self.recover()
        self.base = base
        if self.baseline:
            self._snapshot_user()
        self.guard(task_id, attempt)
        self.write_marker(
            {
                "task": task_id,
                "attempt": attempt,
                "target": self.target,
                "base": base,
                "pid": os.getpid(),
                "run_dir": str(run_dir),
                "allow_dirty": bool(self.baseline),
                "committer": self.committer,
            }
        )
        return base

    def _effective_base(self, g: Git, base: str, log: list[str]) -> str:
        """Commits on the target that are not the agent's (a user's commit in this checkout,
        another run's landing) stay on it: the result is taken from the target's tip then."""
        head_ref = f"refs/heads/{self.target}"
        tip = g.rev(head_ref)
        if g.head_ref() != head_ref or tip is None or tip == base or not g.is_ancestor(base, tip):
            return base
        foreign = self._foreign(g, base, tip)
        if not foreign:
            return base
        log.append(
            f"{len(foreign)} commit(s) on {self.target} not made by the agent (the newest "
            f"{foreign[0][:10]}) stay there; the task's commit goes on top of {tip[:10]}"
        )
        return tip

    def _point_head_back(self, g: Git, base: str) -> None:
        """The agent committed or switched branches: the target branch goes back to the base
        (its commits are kept under the attempt ref) and HEAD to the target, files untouched.
        A target holding a commit that is not the agent's is never moved back."""
        head_ref = f"refs/heads/{self.target}"
        tip = g.rev(head_ref)
        if tip != base and (tip is None or not self._foreign(g, base, tip)):
            g("update-ref", head_ref, base)
        if g.head_ref() != head_ref:
            g("symbolic-ref", "HEAD", head_ref)

    def land(
        self,
        task_id: str,
        collected: Collected,
        message: str,
        fence: Fence,
        reverify: Reverify | None = None,
    ) -> Landing:
        g = self.git
        with MergeLock(self.ralph_dir / LOCK_NAME, timeout=self.lock_timeout):
            g.clear_stale_ref_locks([f"refs/heads/{self.target}"])
            g.repair_task_ref(task_id, f"refs/heads/{self.target}")
            fence()
            already = self.landed(task_id)
            if already:
                return Landing("already", already)
            head = g.rev(f"refs/heads/{self.target}")
            if head != collected.base:
                return Landing(
                    "moved",
                    note=f"{self.target} moved from {collected.base[:10]} to "
                    f"{(head or '?')[:10]} while the agent worked",
                )
            tree = collected.tree
            if self.baseline:
                tree = self._tree_with(g, collected.base, [c.path for c in collected.changes])
            new = g.commit_tree(tree, [collected.base], message)
            try:
                g.update_refs(
                    [
                        f"create {task_ref(task_id)} {new}",
                        f"update refs/heads/{self.target} {new} {collected.base}",
                    ],
                    self.scratch,
                )
            except RefRaceError as exc:
                if isinstance(exc, RefRefusedError):
                    raise  # not a race: an attempt that failed (the worker counts it)
                landed = self.landed(task_id)
                if landed:
                    return Landing("already", landed)
                return Landing("moved", note=str(exc))
            if self.baseline:  # the index still holds the user's staging: sync our paths only
                ours = [c.path for c in collected.changes][:500]
                g("--literal-pathspecs", "reset", "-q", new, "--", *ours)
            self.clear_marker()
            return Landing("landed", new)

    def _tree_with(self, g: Git, base: str, paths: list[str]) -> str:
        """Under --allow-dirty: the base's tree plus only the agent's paths, built in a scratch
        index so the user's staged changes stay out of the commit."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        index = self.scratch / f"index-{os.getpid()}"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            g("read-tree", base, env=env)
            for start in range(0, len(paths), 500):
                g("--literal-pathspecs", "add", "-A", "--", *paths[start : start + 500], env=env)
            return g("write-tree", env=env)
        finally:
            index.unlink(missing_ok=True)

    def _discard_some(self, g: Git, base: str, keep: Path) -> list[str]:
        """Under --allow-dirty: keep a patch of the attempt's paths, then undo only those."""
        g("reset", "-q")  # unstage what collect staged, then the user's own staging back
        self._restore_user_index(g)
        theirs = set(self.baseline)
        kept = self._restore_user(self._user_paths_changed(), keep)
        ours = [p for p in self._dirty() if p not in theirs]
        if not ours:
            return kept
        patch = g("diff", "--binary", base, self._tree_with(g, base, ours), stdout_as_string=False)
        if patch:
            keep.parent.mkdir(parents=True, exist_ok=True)
            keep.write_bytes(patch + b"\n")  # type: ignore[operator]
            kept.append(str(keep))
        tracked = set(g("ls-tree", "-r", "--name-only", "-z", base).split("\0"))
        for start in range(0, len(ours), 500):
            chunk = [p for p in ours[start : start + 500] if p in tracked]
            if chunk:
                g("--literal-pathspecs", "checkout", "-q", base, "--", *chunk)
        for path in ours:
            if path not in tracked:
                (self.root / path).unlink(missing_ok=True)
        return [*kept, f"reverted {len(ours)} path(s) of the attempt"]

    def finish(self) -> None:
        """The checkout stays on the target branch. The marker goes only when the tree is
        clean: an attempt whose discard failed (a full disk) leaves it for the next run's
        `recover`, which saves and cleans what the attempt left."""
        if self.read_marker() is None:
            return
        theirs = set(self.baseline)
        if not [p for p in self._dirty() if p not in theirs]:
            self.clear_marker()
