"""The decisions on tasks waiting for review: the queue, approve (land), reject (back with a note).

`approve` lands a reviewed commit through the same exactly-once path as a worker's landing
(ralph/workspace/worktree.py): under the merge lock, the target's head is looked at again; a
target that moved since the commit was made is merged with `merge-tree` (a conflict sends the
task back to the queue with a note) and the merged result re-verified outside the lock, in a
scratch worktree; then the target moves together with `refs/ralph/tasks/<id>` in one ref
transaction, which git refuses a second time. Only then does the store mark the task done. A
process killed between the two is finished by the next `ralph approve` of that task (its ref
is found on the target) or by the next `ralph run` (runner.reconcile).

`reject` keeps the commit under `refs/ralph/attempts/<task>/review-<n>`, drops the review
branch, and sends the task back with the note the next attempt's prompt shows.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from git.exc import GitCommandError

from ralph import errors
from ralph.review import review_branch
from ralph.store import ensure_ralph_dir
from ralph.workspace.git import ATTEMPT_REFS, Git, RefRaceError, RefRefusedError, git_env
from ralph.workspace.worktree import main_root

# A conflict resolver (another module's): (task id, target head, reviewed commit, conflicted
# files) -> a commit on that head that resolves them, or None to send the task back.
Resolver = Callable[[str, str, str, list[str]], str | None]
VERIFY_TAIL = 1500


def default_by() -> str:
    """Who decides, when not told: `$USER@host`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{os.uname().nodename}"


@dataclass
class Decision:
    """What `approve` or `reject` did to one task."""

    task: str
    status: str  # landed | already | empty | sent_back | rejected
    commit: str | None = None
    note: str | None = None
    unblocked: list[str] = field(default_factory=list)
    kept: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "status": self.status,
            "commit": self.commit,
            "note": self.note,
            "unblocked": self.unblocked,
            "kept": self.kept,
        }


class ReviewDesk:
    """Approve and reject tasks in review, for the CLI and the web page (one call each)."""

    def __init__(
        self,
        store: Any,
        root: Path,
        *,
        verify: list[list[str]] | None = None,
        lock_timeout: float = 900.0,
        verify_timeout: float | None = 3600.0,
        resolver: Resolver | None = None,
        log: Callable[[str], None] = lambda line: None,
        pull_requests: bool = False,
    ):
        self.store, self.root = store, Path(root)
        self.pull_requests = pull_requests  # [land] mode = "pr": GitHub decides, not this desk
        self.verify = list(verify or [])
        self.lock_timeout, self.verify_timeout = lock_timeout, verify_timeout
        self.resolver = resolver
        self.log = log
        self.ralph_dir = ensure_ralph_dir(main_root(self.root))
        self.git = Git(self.root, git_env(self.root, self.ralph_dir))

    # -- reading -----------------------------------------------------------------------------
    def queue(self) -> list[dict[str, Any]]:
        """The tasks waiting, oldest first: task, title, diff stat, cost, age, verify result."""
        now = time.time()
        items = self.store.review_queue()
        for item in items:
            item["age_s"] = None
            with contextlib.suppress(TypeError, ValueError):
                from ralph.models import from_iso

                item["age_s"] = round(now - float(from_iso(item["created_at"]) or now), 1)
            item["diffstat"] = self.diffstat(item.get("base_sha"), item["commit_sha"])
        return items

    def diffstat(self, base: str | None, commit: str) -> str:
        """`git diff --shortstat` of a reviewed commit: "2 files changed, 5 insertions(+)"."""
        try:
            return self.git("diff", "--shortstat", base or f"{commit}^", commit).strip()
        except GitCommandError:
            return "?"

    def files(self, task_id: str) -> list[dict[str, str]]:
        """The pending commit's diff, file by file: [{path, status, patch}]."""
        review = self.store.pending_review(task_id)
        base, commit = review.get("base_sha") or f"{review['commit_sha']}^", review["commit_sha"]
        names = self.git("diff", "--name-status", "--no-renames", "-z", base, commit)
        fields = [f for f in names.split("\0") if f]
        found = []
        for status, path in zip(fields[0::2], fields[1::2], strict=False):
            patch = self.git("diff", "--no-renames", "--no-color", base, commit, "--", path)
            found.append({"path": path, "status": status, "patch": patch})
        return found

    # -- deciding ----------------------------------------------------------------------------
    def reject(self, task_id: str, note: str, *, by: str | None = None) -> Decision:
        """Send the task back with `note` for its next attempt; its commit is kept under
        refs/ralph/attempts/<task>/review-<n>."""
        if not note or not note.strip():
            raise errors.UsageError("a rejection needs a note", hint='--note "what to change"')
        review = self._decidable(task_id, "close")
        kept = self._keep(task_id, review)
        self.store.review_returned(
            task_id, by=by or default_by(), note=note.strip(), state="rejected", kept=kept
        )
        return Decision(task_id, "rejected", review["commit_sha"], note.strip(), kept=kept)

    def approve(self, task_id: str, *, by: str | None = None) -> Decision:
        """Land the task's reviewed commit on its target exactly once, then mark it done."""
        from ralph.workspace.worktree import Worktrees

        by = by or default_by()
        review = self._decidable(task_id, "merge")
        wt = Worktrees(
            self.root,
            ralph_dir=self.ralph_dir,
            target=review["target"],
            lock_timeout=self.lock_timeout,
        )
        main = wt.main
        commit = review["commit_sha"]
        base = review.get("base_sha") or main.rev(f"{commit}^")
        message = main("log", "-1", "--format=%B", commit)
        verified_on = _verified_on(review.get("verify"))
        verified: tuple[str, str] | None = None  # (head, tree) verify passed on here
        races = 0
        while True:
            verify_on: tuple[str, str] | None = None
            with wt.lock(f"ralph approve {task_id}"):
                wt.recover_main()
                wt.repair_task_ref(task_id)
                already = wt.landed(task_id)
                if already:  # landed before (a killed approve, another approver)
                    _, unblocked = self.store.review_landed(task_id, commit=already, by=by)
                    self._drop_branch(task_id)
                    return Decision(task_id, "already", already, unblocked=unblocked)
                head = wt.head()
                tree = main.tree_of(commit)
                if head != base:
                    merged, conflicted = main.merge_tree(head, commit)
                    if merged is None:
                        resolved = self._resolve(task_id, head, commit, conflicted)
                        if resolved is None:
                            note = _conflict_note(wt.target, conflicted)
                            return self._send_back(task_id, review, note, by)
                        commit, base, verified_on = resolved, head, None
                        continue
                    if merged == main.tree_of(head):
                        _, unblocked = self.store.review_landed(task_id, commit=None, by=by)
                        self._drop_branch(task_id)
                        note = f"{wt.target} already has these changes"
                        return Decision(task_id, "empty", None, note, unblocked)
                    tree = merged
                needs_verify = self.verify and head != verified_on and verified != (head, tree)
                if needs_verify:
                    verify_on = (head, tree)
                else:
                    new = commit if head == base else main.commit_tree(tree, [head], message)
                    try:
                        blocked = wt.advance(task_id, head, new)
                    except RefRaceError as exc:
                        if isinstance(exc, RefRefusedError):
                            raise errors.WorkspaceError(str(exc)) from None
                        races += 1
                        if races >= wt.race_limit:
                            raise errors.WorkspaceError(
                                f"lost the race to land {task_id} {races} times: {exc}"
                            ) from None
                        continue
                    if blocked:
                        raise errors.WorkspaceError(
                            f"cannot land {task_id}: {blocked}",
                            hint=f"then run `ralph approve {task_id}` again",
                        )
            if verify_on is not None:  # outside the lock: a slow suite holds no landing
                failed = self._verify(
                    task_id, main.commit_tree(verify_on[1], [verify_on[0]], message)
                )
                if failed:
                    return self._send_back(task_id, review, failed, by)
                verified = verify_on
                continue
            _, unblocked = self.store.review_landed(task_id, commit=new, by=by)
            self._drop_branch(task_id)
            return Decision(task_id, "landed", new, unblocked=unblocked)

    # -- helpers -----------------------------------------------------------------------------
    def _decidable(self, task_id: str, how: str) -> dict[str, Any]:
        """The task's pending review, unless a pull request holds the decision: then a
        UsageError saying to `how` (merge or close) it on GitHub."""
        review = self.store.pending_review(task_id)
        if review.get("pr_number") or self.pull_requests:
            where = f"pull request #{review['pr_number']} ({review['pr_url']})"
            raise errors.UsageError(
                f"{task_id} waits on {where if review.get('pr_number') else 'a pull request'}; "
                f"{how} it on GitHub instead",
                hint="`ralph review --sync` (or the next `ralph run`) then carries it out",
            )
        return review

    def _resolve(self, task_id: str, head: str, commit: str, files: list[str]) -> str | None:
        """The conflict resolver's commit on `head`, if one is set and it resolved them."""
        if self.resolver is None:
            return None
        return self.resolver(task_id, head, commit, files)

    def _send_back(self, task_id: str, review: dict[str, Any], note: str, by: str) -> Decision:
        """Back to the queue with `note` (a conflict or a failed re-verify); commit kept."""
        kept = self._keep(task_id, review)
        self.store.review_returned(task_id, by=by, note=note, state="closed", kept=kept)
        return Decision(task_id, "sent_back", review["commit_sha"], note, kept=kept)

    def _keep(self, task_id: str, review: dict[str, Any]) -> str:
        return keep_commit(self.git, self.root, task_id, review)

    def _drop_branch(self, task_id: str) -> None:
        """The review branch of a landed task: its commit is on the target now."""
        branch = review_branch(task_id)
        with contextlib.suppress(GitCommandError):
            if self.git.rev(branch) is not None:
                self.git("update-ref", "-d", branch)

    def _verify(self, task_id: str, commit: str) -> str | None:
        """Run the verify commands in a scratch worktree at `commit`; the failure note, or None."""
        folder = self.root / ".ralph" / "tmp" / f"approve-{task_id}-{os.getpid()}"
        shutil.rmtree(folder, ignore_errors=True)
        self.git("worktree", "add", "--detach", "-f", str(folder), commit)
        try:
            env = {**os.environ, "RALPH_TASK_ID": task_id, "PWD": str(folder)}
            for argv in self.verify:
                try:
                    done = subprocess.run(
                        argv,
                        cwd=folder,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=self.verify_timeout,
                    )
                except (OSError, subprocess.TimeoutExpired) as exc:
                    return f"verify command `{' '.join(argv)}` failed on the target's head: {exc}"
                if done.returncode != 0:
                    tail = (done.stdout + done.stderr)[-VERIFY_TAIL:]
                    return (
                        f"verify command `{' '.join(argv)}` failed on the target's newer head "
                        f"(exit {done.returncode})\n{tail}"
                    ).strip()
            return None
        finally:
            with contextlib.suppress(GitCommandError):
                self.git("worktree", "remove", "--force", str(folder))
            shutil.rmtree(folder, ignore_errors=True)


def keep_commit(git: Git, root: Path, task_id: str, review: dict[str, Any]) -> str:
    """Keep a sent-back review's commit under the attempts namespace and drop its review
    branch, in one ref transaction (the commit stays reachable whatever happens next)."""
    kept = f"{ATTEMPT_REFS}{task_id}/review-{review['id']}"
    lines = [f"update {kept} {review['commit_sha']}"]
    branch = review_branch(task_id)
    if git.rev(branch) is not None:
        lines.append(f"delete {branch}")
    git.update_refs(lines, Path(root) / ".ralph" / "tmp")
    return kept


def _verified_on(verify: Any) -> str | None:
    """The head the verify commands passed on when the commit went to review."""
    import json

    if isinstance(verify, str):
        with contextlib.suppress(ValueError):
            verify = json.loads(verify)
    if isinstance(verify, dict) and verify.get("result") == "passed":
        return str(verify.get("on") or "") or None
    return None


def _conflict_note(target: str, files: list[str]) -> str:
    shown = ", ".join(files[:5]) or "unknown files"
    return (
        f"Merge conflict landing on {target}: {shown}. {target} changed these files since the "
        "reviewed commit was made; do the task again on top of them."
    )


def finish_checkout_move(root: Path, lock_timeout: float = 900.0) -> bool:
    """Finish moving the main checkout's files after a landing that was killed half way (an
    approve, or a worktree worker): the branch already holds the commit, the files not yet.
    A run in the checkout would otherwise take the missing move for the user's uncommitted
    changes and refuse to start. Only a move onto the checked-out branch is finished; returns
    whether one was."""
    import json

    from ralph.workspace.worktree import MAIN_SYNC, Worktrees

    marker = Path(root) / ".ralph" / MAIN_SYNC
    if not marker.exists():
        return False
    try:
        wt = Worktrees(root, ralph_dir=Path(root) / ".ralph", lock_timeout=lock_timeout)
        new = str(json.loads(marker.read_text())["new"])
        if not wt.main.is_ancestor(new, wt.target_ref):
            return False  # a move onto another branch: not this checkout's to finish
        with wt.lock("ralph run: finishing a checkout move"):
            wt.recover_main()
    except (errors.RalphError, GitCommandError, OSError, ValueError, KeyError):
        return False
    return not marker.exists()
