"""GitHub issues as a task source (`ralph import github:OWNER/REPO`) and the way back: a comment
on the issue when its task lands (and closing it with `[github] close_issues = true`).

An issue becomes task `<prefix>-<number>` (`gh-12`): its title, its body as the description,
its labels as labels (a `needs:<capability>` label also as a required capability), and
"blocked by #N" / "depends on #N" lines or task-list items `- [ ] #N` as dependencies on the
issues they name. Importing again updates the open tasks and adds nothing twice. The comment is
written once per task: it carries a marker that a later sync looks for first, so a crash
between the comment and its record never comments twice.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from ralph import errors
from ralph.github import Repo, close_issue, comment, issue_comments, list_issues
from ralph.models import Task
from ralph.store.base import SQLStore

SOURCE = "github:"
BLOCKED_BY = re.compile(
    r"(?:blocked\s+by|depends\s+on|after)\s*:?\s*((?:#\d+[\s,]*(?:and\s+)?)+)", re.IGNORECASE
)
TASK_ITEM = re.compile(r"^\s*[-*]\s+\[[ xX]\]\s+#(\d+)\b", re.MULTILINE)
NEEDS = "needs:"
COMMENTED = "github_commented"  # the event that records a landing's comment


def is_github(source: str) -> bool:
    return source.startswith(SOURCE)


@dataclass
class GitHubPlan:
    """What an import would do (or did, once applied)."""

    source: str
    specs: list[dict[str, Any]] = field(default_factory=list)  # every issue's task
    new: list[dict[str, Any]] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deps: list[tuple[str, str]] = field(default_factory=list)  # (blocker, blocked) to add
    notes: list[str] = field(default_factory=list)
    applied: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": "github",
            "applied": self.applied,
            "new": self.new,
            "updated": self.updated,
            "existing": self.unchanged,
            "dependencies": [{"blocker": a, "blocked": b} for a, b in self.deps],
            "notes": self.notes,
        }


def references(body: str) -> set[int]:
    """The issue numbers a body says it waits for."""
    found = {int(n) for m in BLOCKED_BY.finditer(body) for n in re.findall(r"#(\d+)", m[1])}
    return found | {int(n) for n in TASK_ITEM.findall(body)}


def task_spec(repo: Repo, issue: dict[str, Any], prefix: str, label: str | None) -> dict:
    names = [str(lb.get("name")) for lb in issue.get("labels") or [] if lb.get("name")]
    number = int(issue["number"])
    return {
        "id": f"{prefix}-{number}",
        "title": str(issue.get("title") or f"issue #{number}").strip(),
        "description": str(issue.get("body") or "").replace("\r\n", "\n").strip(),
        "status": "done" if str(issue.get("state", "")).upper() == "CLOSED" else "open",
        "labels": [n for n in names if n != label],
        "requires": [n[len(NEEDS) :] for n in names if n.startswith(NEEDS) and n != NEEDS],
        "metadata": {
            "source": f"{SOURCE}{repo}",
            "github": {"repo": str(repo), "number": number, "url": issue.get("url")},
        },
    }


def plan_github(
    store: SQLStore, source: str, *, label: str | None, state: str, prefix: str = "gh"
) -> GitHubPlan:
    """Read the issues through gh and compare them with the store; writes nothing."""
    repo = Repo.parse(source[len(SOURCE) :])
    if state not in ("open", "closed", "all"):
        raise errors.UsageError(f"unknown --state {state!r}", hint="use open, closed or all")
    issues = list_issues(repo, label=label, state=state)
    specs = [task_spec(repo, i, prefix, label) for i in issues]
    plan = GitHubPlan(f"{SOURCE}{repo}", specs)
    ids = {s["id"] for s in specs}
    stored = {t.id: t for t in store.get_many_known(sorted(ids))}
    for spec in specs:
        known = stored.get(spec["id"])
        if known is not None and known.metadata.get("github", {}).get("repo") != str(repo):
            raise errors.UsageError(
                f"task {spec['id']} already exists and does not come from {repo}",
                hint="import with another --prefix",
            )
        if known is None:
            plan.new.append(spec)
        elif _changed(known, spec):
            plan.updated.append(spec["id"])
        else:
            plan.unchanged.append(spec["id"])
        for number in sorted(references(spec["description"])):
            blocker = f"{prefix}-{number}"
            if blocker == spec["id"]:
                continue
            if blocker not in ids and blocker not in stored:
                plan.notes.append(
                    f"{spec['id']} waits for #{number}, which this import does not include"
                )
                continue
            if known is None or blocker not in known.blocked_by:
                plan.deps.append((blocker, spec["id"]))
    return plan


def _changed(task: Task, spec: dict[str, Any]) -> bool:
    return (task.title, task.description, sorted(task.labels), sorted(task.requires)) != (
        spec["title"],
        spec["description"],
        sorted(spec["labels"]),
        sorted(spec["requires"]),
    )


def apply_github(store: SQLStore, plan: GitHubPlan) -> list[Task]:
    """Add the new tasks with their dependencies in one transaction, then update the open
    tasks whose issue changed and add the dependencies found on known tasks."""
    specs = {s["id"]: s for s in plan.specs}
    new_ids = {s["id"] for s in plan.new}
    for spec in plan.new:
        spec["blocked_by"] = sorted(b for b, blocked in plan.deps if blocked == spec["id"])
    added = store.add_many(_in_dependency_order(plan.new)) if plan.new else []
    for task_id in plan.updated:
        spec = specs[task_id]
        if store.get(task_id).status == "open":
            store.update(
                task_id,
                title=spec["title"],
                description=spec["description"],
                labels=spec["labels"],
                requires=spec["requires"],
            )
    for blocker, blocked in plan.deps:
        if blocked not in new_ids:
            store.block(blocked, blocker)
    plan.applied = True
    return added


def _in_dependency_order(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Blockers before the tasks they block, so one batch can name them (cycles are left for
    the store to refuse with its own message)."""
    by_id = {s["id"]: s for s in specs}
    done: list[dict[str, Any]] = []
    seen: set[str] = set()

    def visit(spec: dict[str, Any], path: frozenset[str]) -> None:
        if spec["id"] in seen or spec["id"] in path:
            return
        for blocker in spec.get("blocked_by", []):
            if blocker in by_id:
                visit(by_id[blocker], path | {spec["id"]})
        seen.add(spec["id"])
        done.append(spec)

    for spec in sorted(specs, key=lambda s: s["metadata"]["github"]["number"]):
        visit(spec, frozenset())
    return done


# -- the way back: a comment when the task lands -----------------------------------------------
def marker(task_id: str) -> str:
    return f"<!-- ralph:landed {task_id} -->"


def sync_landed(store: SQLStore, *, close: bool = False, log: Any = None) -> list[str]:
    """Comment on (and with `close`, close) the issue of every done task from GitHub that has
    no `github_commented` event yet. Returns the task ids it commented on."""
    said = {e.task_id for e in store.events(kind=COMMENTED)}
    commented = []
    for task in store.list(status="done"):
        origin = task.metadata.get("github") if isinstance(task.metadata, dict) else None
        if not origin or task.id in said or not task.commit_sha:
            continue
        repo, number = Repo.parse(origin["repo"]), int(origin["number"])
        tag = marker(task.id)
        if not any(tag in body for body in issue_comments(repo, number)):
            comment(
                repo,
                number,
                f"Landed by ralph as {task.commit_sha} (task `{task.id}`).\n\n{tag}",
            )
        if close:
            close_issue(repo, number)
        store.note_event(COMMENTED, task_id=task.id, commit=task.commit_sha, closed=close)
        commented.append(task.id)
        if log:
            log(f"{task.id}: commented on {repo}#{number}" + (" and closed it" if close else ""))
    return commented


class LandedSync:
    """During a run, comments on the issues of tasks that landed, off the workers' path: a
    thread that syncs every `every` seconds and once more at the end. GitHub being away
    delays a comment and is logged once; it never stops the run."""

    def __init__(self, store: SQLStore, *, close: bool, log: Any, every: float = 15.0):
        self.store, self.close, self.log, self.every = store, close, log, every
        self._stop = threading.Event()
        self._said: str | None = None
        self._thread = threading.Thread(target=self._loop, name="github-sync", daemon=True)

    @classmethod
    def start_if_needed(cls, store: SQLStore, settings: Any, log: Any) -> LandedSync | None:
        """A sync when the store holds tasks imported from GitHub, else None."""
        if not any(isinstance(t.metadata, dict) and "github" in t.metadata for t in store.list()):
            return None
        sync = cls(store, close=bool(settings.github.get("close_issues")), log=log)
        sync._thread.start()
        return sync

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sync_once()

    def sync_once(self) -> None:
        try:
            sync_landed(self.store, close=self.close, log=self.log)
            self._said = None
        except errors.RalphError as exc:
            if exc.message != self._said:
                self._said = exc.message
                self.log(f"could not comment on GitHub yet: {exc.message}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 5)
        self.sync_once()
