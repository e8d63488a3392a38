"""`[land] mode = "pr"`: every task in review gets a pull request, and GitHub's decision on it
comes back to the store.

- `publish`: push the review commit to the remote as `ralph/review/<task>` (forced: a newer
  attempt replaces an older one), look for the task's pull request by its head branch
  (`gh pr list --head`), open one only when there is none that no earlier review recorded, and
  record its number (`store.attach_pr`). Every step may be repeated, so a crash between the
  push and the pull request, or between opening it and recording it, is finished by the next
  publish and never opens a second pull request.
- `poll`: `gh pr view` every recorded pull request. Merged: the target is fetched (the merge
  commit must exist here) and the task is done with that commit; its dependents become ready.
  Closed unmerged: the commit is kept under refs/ralph/attempts/ and the task goes back to the
  queue with the reviews and comments as its review notes, as `ralph reject` does. Open: waits.

`sync` does both for every pending review; `ralph run` calls it at its start and every
`[land] poll` seconds (PullRequestSync), `ralph review --sync` once. A failed gh or git call is
one line in the log and that task is tried again later, each failure waiting twice as long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from git.exc import GitCommandError

from ralph import errors
from ralph.github import Repo, pr_create, pr_list_head, pr_number, pr_view, repo_of_url
from ralph.review import review_branch
from ralph.review.desk import keep_commit
from ralph.store import ensure_ralph_dir
from ralph.workspace.git import Git, first_line, git_env
from ralph.workspace.worktree import main_root

BY = "github"  # who decided, in the events: `github:#12`
BACKOFF_MAX = 16  # a failing task waits at most 16 polls


def github_repo(root: Path, remote: str, configured: str | None) -> Repo:
    """The GitHub repository pull requests go to: `[land] repo`, else the remote's URL."""
    if configured:
        return Repo.parse(configured)
    git = Git(Path(root), {})
    try:
        url = git("remote", "get-url", remote).strip()
    except GitCommandError:
        raise errors.UsageError(f"no git remote named {remote!r}") from None
    repo = repo_of_url(url)
    if repo is None:
        raise errors.UsageError(
            f"the remote {remote} ({url}) is not a GitHub repository",
            hint='name it in ralph.toml: [land] repo = "OWNER/NAME"',
        )
    return repo


@dataclass
class SyncReport:
    """What one sync did, task by task."""

    opened: list[dict[str, Any]] = field(default_factory=list)  # {task, number, url}
    landed: list[dict[str, Any]] = field(default_factory=list)  # {task, number, commit, unblocked}
    returned: list[dict[str, Any]] = field(default_factory=list)  # {task, number, note}
    waiting: list[dict[str, Any]] = field(default_factory=list)  # {task, number, url}
    failed: list[dict[str, Any]] = field(default_factory=list)  # {task, error}
    tried: list[str] = field(default_factory=list)  # every task looked at

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("opened", "landed", "returned", "waiting", "failed")}


class PullRequests:
    """The pull requests of one repository's tasks in review, over the store and the remote."""

    def __init__(
        self,
        store: Any,
        root: Path,
        *,
        remote: str,
        repo: Repo,
        log: Callable[[str], None] = lambda line: None,
    ):
        self.store, self.remote, self.repo, self.log = store, remote, repo, log
        self.root = main_root(Path(root))
        self.ralph_dir = ensure_ralph_dir(self.root)
        self.git = Git(self.root, git_env(self.root, self.ralph_dir))
        # A worker's publish and the poll thread's must not both find no pull request and
        # both open one. (Across hosts GitHub itself refuses a second open one per branch;
        # the refused host adopts it at its next poll.)
        self._lock = threading.RLock()

    # -- one task ----------------------------------------------------------------------------
    def publish(self, task_id: str) -> dict[str, Any]:
        """Push the task's review commit and make sure exactly one pull request shows it;
        returns {task, number, url, opened}."""
        with self._lock:
            return self._publish(task_id)

    def _publish(self, task_id: str) -> dict[str, Any]:
        review = self.store.pending_review(task_id)
        if review.get("pr_number"):
            return {"task": task_id, "number": review["pr_number"], "url": review["pr_url"],
                    "opened": False}  # fmt: skip
        head = review_branch(task_id).removeprefix("refs/heads/")
        self._git("push", "--porcelain", "-q", self.remote,
                  f"+{review['commit_sha']}:refs/heads/{head}")  # fmt: skip
        recorded = {r["pr_number"] for r in self.store.reviews_of(task_id) if r["pr_number"]}
        found = [p for p in pr_list_head(self.repo, head) if p.get("number") not in recorded]
        opened = not found
        if found:  # opened before a crash: adopted, never opened twice
            url = str(found[0]["url"])
        else:
            task = self.store.get(task_id)
            url = pr_create(
                self.repo,
                head=head,
                base=review["target"],
                title=task.title,
                body=self._body(task, review),
            )
        number = pr_number(url)
        self.store.attach_pr(task_id, number=number, url=url)
        self.log(f"{task_id}: pull request #{number} {'opened' if opened else 'found'}: {url}")
        return {"task": task_id, "number": number, "url": url, "opened": opened}

    def poll(self, review: dict[str, Any], report: SyncReport) -> None:
        """Look at one recorded pull request and carry out what GitHub decided."""
        task_id, number = review["task_id"], int(review["pr_number"])
        seen = pr_view(self.repo, number)
        state = str(seen.get("state") or "").upper()
        by = f"{BY}:#{number}"
        if state == "MERGED":
            sha = str((seen.get("mergeCommit") or {}).get("oid") or "")
            if not sha:
                raise errors.GitHubError(f"pull request #{number} is merged but names no commit")
            self._fetch_target(review["target"], sha)
            _, unblocked = self.store.review_landed(task_id, commit=sha, by=by)
            self._drop_branch(task_id)
            report.landed.append(
                {"task": task_id, "number": number, "commit": sha, "unblocked": unblocked}
            )
            self.log(f"{task_id}: pull request #{number} merged as {sha[:10]}; done")
        elif state == "CLOSED":
            note = closed_note(number, seen)
            kept = keep_commit(self.git, self.root, task_id, review)
            self.store.review_returned(task_id, by=by, note=note, state="rejected", kept=kept)
            report.returned.append({"task": task_id, "number": number, "note": note})
            self.log(f"{task_id}: pull request #{number} closed unmerged; back to the queue")
        elif state == "OPEN":
            report.waiting.append({"task": task_id, "number": number, "url": review["pr_url"]})
        else:
            raise errors.GitHubError(
                f"pull request #{number} is in no state ralph knows: {state!r}"
            )

    # -- every task --------------------------------------------------------------------------
    def sync(
        self, due: Callable[[str], bool] = lambda task_id: True, *, publish: bool = True
    ) -> SyncReport:
        """Publish every pending review without a pull request (unless not `publish`: a
        review-mode queue is never pushed by a sync) and poll the others, only the tasks `due`
        says; a failure is recorded for that task and the others go on."""
        report = SyncReport()
        for review in self.store.review_queue():
            task_id = review["task_id"]
            if not due(task_id) or not (publish or review.get("pr_number")):
                continue
            report.tried.append(task_id)
            try:
                if review.get("pr_number"):
                    with self._lock:
                        self.poll(review, report)
                else:
                    report.opened.append(self.publish(task_id))
            except errors.RalphError as exc:
                report.failed.append({"task": task_id, "error": exc.message})
        return report

    # -- helpers -----------------------------------------------------------------------------
    def _body(self, task: Any, review: dict[str, Any]) -> str:
        """The description, then the commit message's body: the agent's commit subjects,
        the cost and the `Task:` / `Ralph-Token:` trailers."""
        message = self._git("log", "-1", "--format=%b", review["commit_sha"]).strip()
        parts = [task.description.strip(), message]
        if "Cost:" not in message:  # a commit template without the cost
            queued = [r for r in self.store.review_queue() if r["task_id"] == task.id]
            cost = queued[0].get("cost_usd") if queued else None
            parts.insert(1, "Cost: " + ("unknown" if cost is None else f"${cost:.4f}"))
        return "\n\n".join(p for p in parts if p) or task.title

    def _fetch_target(self, target: str, sha: str) -> None:
        """Fetch the target so the merge commit exists here (and the remote ref follows)."""
        self._git("fetch", "-q", "--no-tags", self.remote,
                  f"+refs/heads/{target}:refs/remotes/{self.remote}/{target}")  # fmt: skip
        try:
            self.git("cat-file", "-e", f"{sha}^{{commit}}")
        except GitCommandError:
            raise errors.WorkspaceError(
                f"the merge commit {sha[:10]} is not on {self.remote}/{target} yet"
            ) from None

    def _drop_branch(self, task_id: str) -> None:
        branch = review_branch(task_id)
        try:
            if self.git.rev(branch) is not None:
                self.git("update-ref", "-d", branch)
        except GitCommandError:
            pass  # a leftover branch is harmless: the next attempt overwrites it

    def _git(self, *args: str) -> str:
        try:
            return str(self.git(*args))
        except GitCommandError as exc:
            raise errors.WorkspaceError(f"git {args[0]} {self.remote}: {first_line(exc)}") from None


def closed_note(number: int, seen: dict[str, Any]) -> str:
    """A closed pull request's reviews and comments, as the next attempt's review notes."""
    lines = []
    for item in seen.get("reviews") or []:
        body = str(item.get("body") or "").strip()
        if body:
            who = (item.get("author") or {}).get("login") or "a reviewer"
            lines.append(f"Review by {who} ({item.get('state') or 'COMMENTED'}): {body}")
    for item in seen.get("comments") or []:
        body = str(item.get("body") or "").strip()
        if body:
            who = (item.get("author") or {}).get("login") or "someone"
            lines.append(f"Comment by {who}: {body}")
    head = f"Pull request #{number} was closed without merging."
    return "\n".join([head, *lines]) if lines else f"{head} It had no review comments."


class PullRequestSync:
    """During a run: one sync at the start (merged pull requests make their dependents ready
    before any worker claims), then every `every` seconds in a thread, once more at the end.
    A task whose gh or git call failed waits 2, 4, ... (at most 16) polls before its next try."""

    def __init__(self, pulls: PullRequests, *, every: float):
        self.pulls, self.every = pulls, every
        self.failures: dict[str, int] = {}
        self.next_at: dict[str, float] = {}
        self._said: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pr-sync", daemon=True)

    def start(self) -> PullRequestSync:
        self.sync_once()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sync_once()

    def _due(self, task_id: str) -> bool:
        return time.monotonic() >= self.next_at.get(task_id, 0.0)

    def sync_once(self) -> SyncReport:
        try:
            report = self.pulls.sync(self._due)
        except Exception as exc:  # the store away, say: logged, tried at the next poll
            self.pulls.log(f"could not sync the pull requests: {exc}")
            return SyncReport()
        failed = {f["task"]: f["error"] for f in report.failed}
        for task_id, error in failed.items():
            n = self.failures[task_id] = self.failures.get(task_id, 0) + 1
            self.next_at[task_id] = time.monotonic() + self.every * min(2**n, BACKOFF_MAX)
            if self._said.get(task_id) != error:  # one line per new error, not per try
                self._said[task_id] = error
                self.pulls.log(f"{task_id}: pull request not synced yet: {error}")
        for task_id in report.tried:
            if task_id not in failed:
                self.failures.pop(task_id, None)
                self.next_at.pop(task_id, None)
                self._said.pop(task_id, None)
        return report

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.every + 5)
        self.next_at.clear()  # the end of a run tries every task once more
        self.sync_once()
