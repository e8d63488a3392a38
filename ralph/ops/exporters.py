"""`ralph export`: the whole store as JSONL task objects or a Markdown checklist.

Both read back with `ralph import` into the same tasks (ids, statuses, parents, dependencies,
fields), so exporting the imported store gives the same text again.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ralph.errors import UsageError
from ralph.models import Task
from ralph.ops.importers import ITEM, TASK_FIELDS, _normalise_description
from ralph.store.base import SQLStore

EXPORT_FORMATS = ("jsonl", "md")


def export_store(store: SQLStore, fmt: str = "jsonl") -> str:
    """Every task of the store, in the order they were added, as JSONL or Markdown."""
    tasks = store.list()
    if fmt == "md":
        return tasks_markdown(tasks)
    if fmt == "jsonl":
        return tasks_jsonl(tasks)

    raise UsageError(f"unknown export format {fmt!r}", hint="use jsonl or md")


def task_object(task: Task) -> dict[str, Any]:
    """The portable fields of a task: what import reads, without run state or timestamps."""
    data = task.to_dict()
    return {k: data[k] for k in TASK_FIELDS if k != "discovered_from" or data[k]}


def tasks_jsonl(tasks: Sequence[Task]) -> str:
    return "".join(json.dumps(task_object(t), ensure_ascii=False) + "\n" for t in tasks)


def tasks_markdown(tasks: Sequence[Task]) -> str:
    """A checklist nested by parent; fields that are not the title or status ride in a
    `<!-- ralph {...} -->` comment, descriptions are indented under their item."""
    ids = {t.id for t in tasks}
    children: dict[str | None, list[Task]] = defaultdict(list)
    for task in tasks:
        children[task.parent if task.parent in ids else None].append(task)
    lines = ["# Tasks", ""]

    def walk(task: Task, depth: int) -> None:
        indent = "  " * depth
        meta: dict[str, Any] = {"id": task.id}
        title = task.title
        if "\n" in title or "<!--" in title or title != title.strip():
            meta["title"] = title
            title = title.strip().splitlines()[0] if title.strip() else "(untitled)"
        if task.status in ("failed", "cancelled"):
            meta["status"] = task.status
        for name in ("priority", "blocked_by", "labels", "requires", "metadata", "discovered_from"):
            value = getattr(task, name)
            if value:
                meta[name] = value
        description = task.description
        inline = bool(description) and _safe_description(description)
        if description and not inline:
            meta["description"] = description
        mark = "x" if task.status == "done" else " "
        lines.append(f"{indent}- [{mark}] {title} <!-- ralph {_comment_json(meta)} -->")
        if inline:
            lines.extend(f"{indent}  {line}" if line else "" for line in description.splitlines())
        for child in children.get(task.id, []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return "\n".join(lines) + "\n"


def _safe_description(text: str) -> bool:
    """Whether indented lines read back as exactly this text (else it goes in the comment)."""
    if _normalise_description(text) != text:
        return False
    return not any(ITEM.match(line) or "<!--" in line for line in text.splitlines())


def _comment_json(value: dict[str, Any]) -> str:
    # ">" only occurs inside JSON strings, so escaping it keeps "-->" from ending the comment.
    return json.dumps(value, ensure_ascii=False).replace(">", "\\u003e")
