"""prd.json kept in sync: a story whose task is done gets `"passes": true`, in the task's commit.

With `prd = "prd.json"` in the config (`ralph import prd.json --apply` sets it), the loop calls
`mark_passed` after an attempt ends done and before it builds the task commit, so the flip of
`passes` (and the agent's learnings in the story's `notes`, when it has that field) lands in the
same commit as the work. Users who drive their run from prd.json, as in snarktank/ralph, keep it
as their source of truth.

The file is edited as text: the story object is found by id and only the value of its
`passes` (and `notes`) is replaced, so key order, indentation, line breaks and every other field
stay as the user wrote them. Only when the text cannot be edited in place (no `passes` key) is
the file dumped again, with the indentation it had.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from ralph.models import Task

_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def story_id(task: Task, prd_relpath: str) -> str | None:
    """The id of the story `task` was imported from out of `prd_relpath`, or None.

    `ralph import` keeps the story id in `metadata.story_id` and the file (relative to the
    project) in `metadata.source`; a task from another file or added by hand has no story.
    """
    meta = task.metadata or {}
    source = meta.get("source")
    if source is not None and Path(str(source)).as_posix() != Path(prd_relpath).as_posix():
        return None
    sid = meta.get("story_id")
    if sid is not None:
        return str(sid)
    return task.id if source is not None else None


def mark_passed(workspace_path: Path, prd_relpath: str, task: Task, notes: str = "") -> bool:
    """Set `passes` of the story of `task` to true (and append `notes` to the story's `notes`
    field, when the story has one) in `workspace_path / prd_relpath`.

    Returns True when the file changed; False when there is no such file or story, or the story
    already passes with nothing to add.
    """
    path = Path(workspace_path) / prd_relpath
    sid = story_id(task, prd_relpath)
    if sid is None or not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return False  # a file the user broke by hand: leave it for them to fix
    stories = data.get("userStories") if isinstance(data, dict) else None
    if not isinstance(stories, list):
        return False
    index = next(
        (n for n, s in enumerate(stories) if isinstance(s, dict) and str(s.get("id")) == sid),
        None,
    )
    if index is None:
        return False
    story = stories[index]
    notes = notes.strip()
    new_notes = None
    if notes and isinstance(story.get("notes"), str):
        new_notes = f"{story['notes'].rstrip()}\n\n{notes}" if story["notes"].strip() else notes
    if story.get("passes") is True and new_notes is None:
        return False
    edited = _edit_in_place(text, index, passes=story.get("passes") is not True, notes=new_notes)
    if edited is None:  # no `passes` key to flip: dump the whole file, as it was indented
        story["passes"] = True
        if new_notes is not None:
            story["notes"] = new_notes
        edited = json.dumps(data, indent=_indent(text), ensure_ascii=False)
        edited += "\n" if text.endswith("\n") else ""
    if edited == text:
        return False
    path.write_text(edited, encoding="utf-8")
    return True


def _edit_in_place(text: str, index: int, *, passes: bool, notes: str | None) -> str | None:
    """`text` with story `index`'s `passes` value replaced by `true` and its `notes` value by
    `notes`; None when the story has no `passes` key (nothing to replace)."""
    root = _value_start(text, 0)
    members = dict((key, span) for key, span in _members(text, root))
    if "userStories" not in members:
        return None
    spans = list(_elements(text, members["userStories"][0]))
    fields = dict(_members(text, spans[index][0]))
    if "passes" not in fields:
        return None
    replace: list[tuple[tuple[int, int], str]] = []
    if passes:
        replace.append((fields["passes"], "true"))
    if notes is not None and "notes" in fields:
        replace.append((fields["notes"], json.dumps(notes, ensure_ascii=False)))
    for (start, end), value in sorted(replace, reverse=True):
        text = text[:start] + value + text[end:]
    return text


def _value_start(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]


def _members(text: str, start: int) -> Iterator[tuple[str, tuple[int, int]]]:
    """The keys of the JSON object starting at `start`, each with the span of its value."""
    if text[start] != "{":
        return
    pos = _value_start(text, start + 1)
    if text[pos] == "}":
        return
    while True:
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _value_start(text, pos)
        pos = _value_start(text, pos + 1)  # past the colon
        _, end = _DECODER.raw_decode(text, pos)
        yield key, (pos, end)
        pos = _value_start(text, end)
        if text[pos] == "}":
            return
        pos = _value_start(text, pos + 1)  # past the comma


def _elements(text: str, start: int) -> Iterator[tuple[int, int]]:
    """The spans of the elements of the JSON array starting at `start`."""
    if text[start] != "[":
        return
    pos = _value_start(text, start + 1)
    if text[pos] == "]":
        return
    while True:
        _, end = _DECODER.raw_decode(text, pos)
        yield pos, end
        pos = _value_start(text, end)
        if text[pos] == "]":
            return
        pos = _value_start(text, pos + 1)


def _indent(text: str) -> int | str | None:
    """The indentation the file uses (its first indented line), for a full dump."""
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) < len(line):
            lead = line[: len(line) - len(stripped)]
            return "\t" if lead.startswith("\t") else len(lead)
    return None if "\n" not in text.strip() else 2


def configure(root: Path, prd_relpath: str) -> str | None:
    """Write `prd = "<prd_relpath>"` into the project's config (ralph.toml, else pyproject's
    `[tool.ralph]`, else a new ralph.toml); returns a line saying what changed, or None."""
    line = f"prd = {json.dumps(prd_relpath)}"
    config = root / "ralph.toml"
    pyproject = root / "pyproject.toml"
    if config.is_file():
        text = config.read_text(encoding="utf-8")
        edited = _set_top_level(text, line)
        where = "ralph.toml"
    elif pyproject.is_file() and re.search(r"(?m)^\[tool\.ralph\]\s*$", pyproject.read_text()):
        text = pyproject.read_text(encoding="utf-8")
        edited = _set_in_table(text, "tool.ralph", line)
        where = "pyproject.toml [tool.ralph]"
        config = pyproject
    else:
        text, edited, where = "", line + "\n", "ralph.toml"
    if edited == text:
        return None
    config.write_text(edited, encoding="utf-8")
    return f"{where}: {line} (each story's passes is set when its task is done; commit it)"


_PRD_LINE = re.compile(r"^[ \t]*#*[ \t]*prd[ \t]*=.*$")
_TABLE = re.compile(r"^[ \t]*\[")


def _set_top_level(text: str, line: str) -> str:
    """`text` with its top-level prd line (set or commented out) replaced by `line`, or with
    `line` added before the first table."""
    lines = text.splitlines(keepends=True)
    for n, old in enumerate(lines):
        if _TABLE.match(old):
            break
        if _PRD_LINE.match(old):
            if old.strip() == line:
                return text
            lines[n] = line + "\n"
            return "".join(lines)
    else:
        n = len(lines)
    if n and not lines[n - 1].endswith("\n"):
        lines[n - 1] += "\n"
    lines.insert(n, line + "\n\n" if n < len(lines) else line + "\n")
    return "".join(lines)


def _set_in_table(text: str, table: str, line: str) -> str:
    lines = text.splitlines(keepends=True)
    head = next(n for n, old in enumerate(lines) if old.strip() == f"[{table}]")
    for n in range(head + 1, len(lines)):
        if _TABLE.match(lines[n]):
            break
        if _PRD_LINE.match(lines[n]):
            if lines[n].strip() == line:
                return text
            lines[n] = line + "\n"
            return "".join(lines)
    lines.insert(head + 1, line + "\n")
    return "".join(lines)
