"""`ralph dep tree` and `ralph list --tree`: the parent and dependency structure as nested dicts
(the CLI draws them with rich); a node seen before is marked `repeat` instead of expanded."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ralph import errors
from ralph.models import Task
from ralph.store.base import SQLStore

DIRECTIONS = ("waits_on", "unblocks", "children", "follow_ups")


def _node(task: Task, **extra: Any) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "status": task.status,
        "ready": task.is_ready(),
        "blocked_by": task.blocked_by,
        "discovered_from": task.discovered_from,
        **extra,
    }


def task_forest(tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """The tasks nested by parent, in the order they were added (orphans at the top level)."""
    ids = {t.id for t in tasks}
    kids: dict[str | None, list[Task]] = defaultdict(list)
    for task in tasks:
        kids[task.parent if task.parent in ids else None].append(task)

    def build(task: Task) -> dict[str, Any]:
        return _node(task, children=[build(c) for c in kids.get(task.id, [])])

    return [build(t) for t in kids.get(None, [])]


def dependency_tree(store: SQLStore, task_id: str, *, depth: int = 20) -> dict[str, Any]:
    """A task with what it waits on, what waits on it and its children, each recursively."""
    tasks = {t.id: t for t in store.list()}
    if task_id not in tasks:
        raise errors.TaskNotFoundError(task_id)
    blocks: dict[str, list[str]] = defaultdict(list)
    children: dict[str, list[str]] = defaultdict(list)
    found: dict[str, list[str]] = defaultdict(list)  # follow-ups filed by a task's agent
    for task in tasks.values():
        for blocker in task.blocked_by:
            blocks[blocker].append(task.id)
        if task.parent:
            children[task.parent].append(task.id)
        if task.discovered_from:
            found[task.discovered_from].append(task.id)
    edges = {
        "waits_on": lambda i: tasks[i].blocked_by,
        "unblocks": lambda i: blocks.get(i, []),
        "children": lambda i: children.get(i, []),
        "follow_ups": lambda i: found.get(i, []),
    }

    def walk(i: str, direction: str, seen: set[str], level: int) -> dict[str, Any]:
        if i in seen or level >= depth:
            return _node(tasks[i], repeat=True, **{direction: []})
        seen.add(i)
        nested = [walk(n, direction, seen, level + 1) for n in edges[direction](i)]
        return _node(tasks[i], **{direction: nested})

    root = _node(tasks[task_id])
    for direction in DIRECTIONS:
        root[direction] = [walk(n, direction, {task_id}, 1) for n in edges[direction](task_id)]
    return root
