"""`ralph import`: tasks from a prd.json, a Markdown checklist or JSONL, checked before writing.

Every imported task gets an id derived from its source (the story id, or a hash of the file and
the item), so importing the same file again finds its tasks already there and adds nothing.
Anything malformed is a UsageError naming the line or field; nothing is written then.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import textwrap
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ralph import errors, prd
from ralph.models import ID_PATTERN, ID_RULES, STATUSES, Task
from ralph.store import project_root
from ralph.store.base import SQLStore
from ralph.taskfile import task_objects

FORMATS = ("prd", "md", "jsonl")
STDIN = "-"
# The fields of a task object that `ralph export` writes and `add_many` reads.
TASK_FIELDS = (
    "id",
    "title",
    "description",
    "status",
    "priority",
    "parent",
    "blocked_by",
    "labels",
    "requires",
    "metadata",
    "discovered_from",
)
ITEM = re.compile(
    r"^(?P<indent>[ \t]*)(?:[-*+]|\d+[.)])[ \t]+\[(?P<mark>[ xX])\](?:[ \t]+(?P<text>.*))?$"
)
META = re.compile(r"[ \t]*<!--[ \t]*ralph[ \t]+(?P<json>\{.*\})[ \t]*-->[ \t]*$")
HEADING = re.compile(r"^#{1,6}\s")


@dataclass
class SourceTask:
    """One task read from a file: the task object for the store and where it came from."""

    spec: dict[str, Any]
    where: str

    @property
    def id(self) -> str:
        return str(self.spec["id"])


@dataclass
class ImportPlan:
    """What an import would do (or did, once `added` is filled)."""

    source: str
    format: str
    tasks: list[SourceTask]
    existing: set[str] = field(default_factory=set)
    applied: bool = False
    added: list[Task] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def new(self) -> list[SourceTask]:
        return [t for t in self.tasks if t.id not in self.existing]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "applied": self.applied,
            "new": [t.spec for t in self.new],
            "existing": [t.id for t in self.tasks if t.id in self.existing],
            "notes": self.notes,
        }


def import_file(
    store: SQLStore,
    path: str | Path,
    *,
    fmt: str | None = None,
    chain: bool = False,
    apply: bool = False,
    root: Path | None = None,
) -> ImportPlan:
    """Read `path`, check it against the store and, with `apply`, add its new tasks at once."""
    plan = plan_import(store, path, fmt=fmt, chain=chain, root=root)
    if apply:
        apply_plan(store, plan)
        if plan.format == "prd" and str(path) != STDIN:
            _keep_prd_in_sync(plan, Path(path), root)
    return plan


def _keep_prd_in_sync(plan: ImportPlan, path: Path, root: Path | None) -> None:
    """Name the prd.json in the config (`prd = "..."`), so the loop sets each story's `passes`
    when its task is done."""

    base = (root or project_root()).resolve()
    try:
        rel = path.resolve().relative_to(base).as_posix()
    except ValueError:
        plan.notes.append(f"{path} is outside the project: its passes fields are not kept in sync")
        return
    note = prd.configure(base, rel)
    if note:
        plan.notes.append(note)


def plan_import(
    store: SQLStore,
    path: str | Path,
    *,
    fmt: str | None = None,
    chain: bool = False,
    root: Path | None = None,
) -> ImportPlan:
    """Parse and validate without writing: ids, references (file or store) and cycles.

    A `path` of "-" reads standard input (`ralph export | ralph --db other.db import -`)."""
    path = Path(path)
    fmt, tasks = parse_file(path, fmt=fmt, chain=chain, root=root)
    stored = {t.id for t in store.list()}
    _check_references(tasks, stored)
    return ImportPlan(str(path), fmt, tasks, existing={t.id for t in tasks if t.id in stored})


def apply_plan(store: SQLStore, plan: ImportPlan) -> list[Task]:
    """Add the plan's new tasks in one transaction; a store refusal names the source line."""
    new = plan.new
    try:
        plan.added = store.add_many([t.spec for t in new]) if new else []
    except errors.RalphError as exc:
        match = re.match(r"^task (\d+): ", exc.message)
        if match:
            exc.message = f"{new[int(match.group(1)) - 1].where}: {exc.message[match.end() :]}"
        raise
    plan.applied = True
    return plan.added


# -- parsing ------------------------------------------------------------------------------


def detect_format(path: Path, text: str) -> str:
    """prd, md or jsonl from the file name, else from the content."""
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown"):
        return "md"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    head = text.lstrip()
    if not head:
        return "jsonl"  # nothing to import, whatever the format (an empty `ralph export`)
    if head.startswith("{") and '"userStories"' in text:
        return "prd"
    if head.startswith(("{", "[")):
        return "jsonl"
    if ITEM.search(text) or any(ITEM.match(line) for line in text.splitlines()):
        return "md"
    raise errors.UsageError(
        f"{path}: cannot tell its format", hint="pass --format prd, md or jsonl"
    )


def parse_file(
    path: Path, *, fmt: str | None = None, chain: bool = False, root: Path | None = None
) -> tuple[str, list[SourceTask]]:
    """The format and the tasks of a file (or stdin for "-"), with stable ids and validated
    fields."""
    try:
        text = sys.stdin.read() if str(path) == STDIN else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise errors.UsageError(f"cannot read {path}: {reason}") from exc
    if fmt is not None and fmt not in FORMATS:
        raise errors.UsageError(f"unknown format {fmt!r}", hint="use prd, md or jsonl")
    fmt = fmt or detect_format(path, text)
    key = _source_key(path, root)
    if fmt == "prd":
        tasks = parse_prd(text, str(path), key, chain=chain)
    elif fmt == "md":
        tasks = parse_markdown(text, str(path), key, chain=chain)
    else:
        if chain:
            raise errors.UsageError("--chain applies to prd.json and Markdown, not JSONL")
        tasks = parse_jsonl(text, str(path), key)
    for task in tasks:
        _check_fields(task)
    seen: dict[str, str] = {}
    for task in tasks:
        if task.id in seen:
            raise errors.UsageError(
                f"{task.where}: id {task.id!r} is already used at {seen[task.id]}"
            )
        seen[task.id] = task.where
    return fmt, tasks


def _source_key(path: Path, root: Path | None) -> str:
    """The file as ids see it: relative to the project, so a checkout elsewhere gives the same."""

    if str(path) == STDIN:
        return STDIN
    resolved = path.resolve()
    base = (root or project_root()).resolve()
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        return os.fspath(resolved)


def _hash_id(prefix: str, *parts: object) -> str:
    digest = hashlib.sha1("\0".join(map(str, parts)).encode()).hexdigest()
    return f"{prefix}-{digest[:10]}"


def parse_prd(text: str, name: str, key: str, *, chain: bool = False) -> list[SourceTask]:
    """snarktank-style prd.json: `userStories[]` with id, title, description,
    acceptanceCriteria, priority and passes. A lower PRD priority number runs first."""
    data = _load_json(text, name)
    stories = data.get("userStories") if isinstance(data, dict) else None
    if not isinstance(stories, list):
        raise errors.UsageError(f"{name}: expected an object with a userStories array")
    numbers: list[int] = []
    for n, story in enumerate(stories):
        where = f"{name} userStories[{n}]"
        if not isinstance(story, dict):
            raise errors.UsageError(f"{where}: expected an object, got {type(story).__name__}")
        prio = story.get("priority", n + 1)
        if isinstance(prio, bool) or not isinstance(prio, int):
            raise errors.UsageError(f"{where}.priority: expected an integer, got {prio!r}")
        numbers.append(prio)
    top = max(numbers, default=0)
    tasks: list[SourceTask] = []
    for n, story in enumerate(stories):
        where = f"{name} userStories[{n}]"
        title = story.get("title")
        if not isinstance(title, str) or not title.strip():
            raise errors.UsageError(f"{where}.title: a non-empty string is required")
        story_id = story.get("id")
        if story_id is not None and not isinstance(story_id, str | int):
            raise errors.UsageError(f"{where}.id: expected a string, got {story_id!r}")
        sid = str(story_id) if story_id is not None else None
        task_id = sid if sid and ID_PATTERN.match(sid) else _hash_id("prd", key, sid or n, title)
        criteria = story.get("acceptanceCriteria") or []
        if isinstance(criteria, str):
            criteria = [criteria]
        if not isinstance(criteria, list) or not all(isinstance(c, str) for c in criteria):
            raise errors.UsageError(f"{where}.acceptanceCriteria: expected a list of strings")
        description = str(story.get("description") or "").strip()
        if criteria:
            listed = "\n".join(f"- {c}" for c in criteria)
            description = f"{description}\n\nAcceptance criteria:\n{listed}".strip()
        metadata: dict[str, Any] = {"source": key, "prd_priority": numbers[n]}
        if sid:
            metadata["story_id"] = sid
        if story.get("notes"):
            metadata["notes"] = story["notes"]
        spec = {
            "id": task_id,
            "title": title.strip(),
            "description": description,
            "status": "done" if story.get("passes") is True else "open",
            # ralph runs higher numbers first; PRD priority 1 of 5 becomes 5.
            "priority": top + 1 - numbers[n],
            "metadata": metadata,
        }
        tasks.append(SourceTask(spec, where))
    if chain:
        ordered = sorted(tasks, key=lambda t: -t.spec["priority"])  # stable: file order on ties
        _chain(ordered)
    return tasks


def parse_jsonl(text: str, name: str, key: str) -> list[SourceTask]:
    """Task objects, one per line (what `ralph export` writes) or one JSON array
    (what `ralph list --json` prints). Objects without an id get one from their position."""
    tasks = []
    for n, (obj, where) in enumerate(task_objects(text, name), 1):
        spec = {k: obj[k] for k in TASK_FIELDS if obj.get(k) is not None}
        if "priority" not in spec and obj.get("score") is not None:
            spec["priority"] = obj["score"]
        if not spec.get("id"):
            spec["id"] = _hash_id("t", key, n, obj.get("title"))
        tasks.append(SourceTask(spec, where))
    return tasks


def parse_markdown(text: str, name: str, key: str, *, chain: bool = False) -> list[SourceTask]:
    """`- [ ]` / `- [x]` items; a nested item is a child of the item above it, lines indented
    under an item are its description, and `<!-- ralph {...} -->` after a title sets fields."""
    tasks: list[SourceTask] = []
    stack: list[tuple[int, SourceTask]] = []
    seen: dict[tuple[str, ...], int] = defaultdict(int)
    desc: dict[int, list[str]] = defaultdict(list)
    block = 0  # a heading starts a new list: --chain links items within one list only
    current: tuple[int, SourceTask] | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.expandtabs(4)
        match = ITEM.match(line)
        if match:
            indent = len(match.group("indent"))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1] if stack else None
            task = _markdown_item(match, name, n)
            meta_title = task.spec["title"]
            lineage = (*(t.spec["title"] for _, t in stack), meta_title)
            seen[lineage] += 1
            if not task.spec.get("id"):
                task.spec["id"] = _hash_id("md", key, *lineage, seen[lineage])
            if parent is not None and "parent" not in task.spec:
                task.spec["parent"] = parent.id
            task.spec.setdefault("_list", (block, parent.id if parent else None))
            tasks.append(task)
            stack.append((indent, task))
            current = (indent, task)
            continue
        if not line.strip():
            if current is not None:
                desc[id(current[1])].append("")
            continue
        indent = len(line) - len(line.lstrip())
        if current is not None and indent > current[0]:
            cut = min(indent, current[0] + 2)
            desc[id(current[1])].append(line[cut:].rstrip())
            continue
        current = None
        if HEADING.match(line):
            block += 1
            stack.clear()
    by_list: dict[Any, list[SourceTask]] = defaultdict(list)
    for task in tasks:
        lines = desc.get(id(task), [])
        if lines and "description" not in task.spec:
            task.spec["description"] = _normalise_description("\n".join(lines))
        by_list[task.spec.pop("_list")].append(task)
    if chain:
        for siblings in by_list.values():
            _chain(siblings)
    return tasks


def _chain(ordered: list[SourceTask]) -> None:
    """Make each open task wait for the nearest open task before it.

    A task already done waits on nothing (it would show "blocked by" an open item), and an open
    task after a done one still waits for the open work above it, so the order holds.
    """
    before: SourceTask | None = None
    for task in ordered:
        if task.spec.get("status", "open") != "open":
            continue
        if before is not None:
            task.spec.setdefault("blocked_by", [])
            if before.id not in task.spec["blocked_by"]:
                task.spec["blocked_by"].append(before.id)
        before = task


def _markdown_item(match: re.Match[str], name: str, n: int) -> SourceTask:
    where = f"{name} line {n}"
    text = match.group("text") or ""
    spec: dict[str, Any] = {}
    meta = META.search(text)
    if meta:
        text = text[: meta.start()]
        try:
            fields = json.loads(meta.group("json"))
        except json.JSONDecodeError as exc:
            raise errors.UsageError(
                f"{where}: invalid JSON in the ralph comment ({exc.msg} at column {exc.colno})"
            ) from exc
        if not isinstance(fields, dict):
            raise errors.UsageError(f"{where}: the ralph comment must hold a JSON object")
        spec.update({k: fields[k] for k in TASK_FIELDS if fields.get(k) is not None})
    spec.setdefault("title", text.strip())
    done = match.group("mark") in "xX"
    if done:
        spec["status"] = "done"
    elif spec.get("status") not in ("failed", "cancelled"):
        spec["status"] = "open"
    return SourceTask(spec, where)


def _normalise_description(text: str) -> str:
    """What a description reads back as: dedented, no trailing spaces or outer blank lines."""
    lines = [line.rstrip() for line in textwrap.dedent(text).splitlines()]
    return "\n".join(lines).strip("\n")


def _load_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.UsageError(
            f"{name} line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
        ) from exc


# -- checks -------------------------------------------------------------------------------


def _check_fields(task: SourceTask) -> None:
    """The field checks the store makes, done here so the error names the line."""
    spec, where = task.spec, task.where
    title = spec.get("title")
    if not isinstance(title, str) or not title.strip():
        raise errors.UsageError(f"{where}: a non-empty 'title' is required")
    if not isinstance(spec["id"], str) or not ID_PATTERN.match(spec["id"]):
        raise errors.UsageError(
            f"{where}: invalid id {spec['id']!r}",
            hint=ID_RULES,
        )
    priority = spec.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise errors.UsageError(f"{where}: 'priority' must be an integer, got {priority!r}")
    if spec.get("status", "open") not in STATUSES:
        raise errors.UsageError(
            f"{where}: unknown status {spec['status']!r}", hint="use one of: " + ", ".join(STATUSES)
        )
    for name in ("labels", "requires", "blocked_by"):
        value = spec.get(name)
        if isinstance(value, str):
            spec[name] = [v.strip() for v in value.split(",") if v.strip()]
        elif value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
        ):
            raise errors.UsageError(f"{where}: '{name}' must be a list of strings")
    for name in ("parent", "discovered_from"):
        if spec.get(name) is not None and not isinstance(spec[name], str):
            raise errors.UsageError(f"{where}: '{name}' must be a task id")
    if spec.get("metadata") is not None and not isinstance(spec["metadata"], Mapping):
        raise errors.UsageError(f"{where}: 'metadata' must be an object")
    if spec.get("description") is not None and not isinstance(spec["description"], str):
        raise errors.UsageError(f"{where}: 'description' must be a string")


def _check_references(tasks: list[SourceTask], stored: Iterable[str]) -> None:
    """Parents and blockers must be in the file or the store; the file's own edges acyclic."""
    known = set(stored) | {t.id for t in tasks}
    for task in tasks:
        for name in ("parent", "discovered_from"):
            ref = task.spec.get(name)
            if ref and ref not in known:
                raise errors.UsageError(
                    f"{task.where}: unknown {name.replace('_', ' ')} {ref!r}",
                    hint="it is neither in the file nor in the store",
                )
        for blocker in task.spec.get("blocked_by") or []:
            if blocker not in known:
                raise errors.UsageError(
                    f"{task.where}: unknown blocker {blocker!r}",
                    hint="it is neither in the file nor in the store",
                )
            if blocker == task.id:
                raise errors.CycleError(f"{task.where}: {task.id} cannot be blocked by itself")
    where = {t.id: t.where for t in tasks}
    waits = {t.id: 0 for t in tasks}
    unblocks: dict[str, list[str]] = defaultdict(list)
    for task in tasks:
        for blocker in task.spec.get("blocked_by") or []:
            if blocker in waits:
                waits[task.id] += 1
                unblocks[blocker].append(task.id)
    queue = deque(i for i, n in waits.items() if n == 0)
    while queue:
        for nxt in unblocks[queue.popleft()]:
            waits[nxt] -= 1
            if waits[nxt] == 0:
                queue.append(nxt)
    stuck = [i for i, n in waits.items() if n > 0]
    if stuck:
        raise errors.CycleError(
            "dependency cycle among: " + ", ".join(f"{i} ({where[i]})" for i in stuck[:4])
        )
    parents = {t.id: t.spec.get("parent") for t in tasks}
    for start in parents:
        node, hops = parents[start], 0
        while node in parents and hops <= len(parents):
            if node == start:
                raise errors.CycleError(f"{where[start]}: parent cycle through {start}")
            node, hops = parents[node], hops + 1
