"""The RALPH memory: a progress log carried from task to task, so a fresh agent starts with
what the agents before it learned.

Where it lives: `progress.md` at the top of the repository (the `progress` config key; false
turns it off), committed as part of each task's commit. Not under `.ralph/`, because:
- every host of a multi-host run works in its own clone and shares only git: a file under the
  git-ignored `.ralph/` would give each host its own memory, and parallel workers' worktrees
  would each see only their own;
- the next fresh agent reads the entry in the checkout it is given, with the code it describes,
  and `git log -p progress.md` shows which commit taught what;
- users read and edit it like any other file, and review it in pull requests.

Parallel workers append to the same file on different branches; a `merge=union` attribute for
it (written to the repository's local `info/attributes`, never to the user's .gitattributes)
makes git keep both appended entries when a task branch is rebased, instead of a conflict.

The file is plain Markdown. Each entry is a `## Task <id>: <title>` heading, a few `- key: value`
lines, and the agent's learnings. Anything else in the file (a header, the user's own sections)
is left alone; entries are found by their heading, so a hand-edited file still appends and
parses. The agent writes its learnings to the file named by `RALPH_NOTES` (under the attempt's
run folder); `read_notes` reads it back, bounded.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ralph.models import iso

if TYPE_CHECKING:
    from ralph.config import Settings

NOTES_FILE = "notes.md"  # RALPH_NOTES = <run folder>/notes.md
NOTES_MAX_CHARS = 4000
HEADER = """\
# Progress

What each task's agent learned, newest last. ralph appends an entry when a task is done and
shows the last few to the next agent. Edit freely: add your own notes above the entries.
"""
SECTION = re.compile(r"^#{1,2} ")
ENTRY = re.compile(r"^## Task (?P<id>\S+?): (?P<title>.*)$")
FIELD = re.compile(r"^- (?P<key>when|worker|outcome|commit): (?P<value>.*)$")
ATTRIBUTE = "merge=union"


@dataclass
class ProgressEntry:
    """One finished task's line in the memory: what was done, by whom, and what was learned."""

    task_id: str
    title: str
    outcome: str = "done"
    commit: str | None = None  # unknown when recorded before the task's own commit
    worker: str = ""
    when: float = 0.0
    learnings: str = ""

    def render(self) -> str:
        """The entry as Markdown, ending with a blank line (so entries that git's union merge
        puts one after the other stay apart); heading-like lines of the learnings are escaped
        so they do not start a new entry."""
        lines = [f"## Task {self.task_id}: {' '.join(self.title.split())}"]
        lines.append(f"- when: {iso(self.when or time.time())}")
        if self.worker:
            lines.append(f"- worker: {self.worker}")
        lines.append(f"- outcome: {self.outcome}")
        if self.commit:
            lines.append(f"- commit: {self.commit}")
        learnings = self.learnings.strip()
        if learnings:
            body = [
                ("\\" + line if line.startswith("#") else line) for line in learnings.split("\n")
            ]
            lines += ["", *body]
        return "\n".join(lines) + "\n\n"


class ProgressLog:
    """The progress file: append entries, read back the last ones."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def append(self, entry: ProgressEntry) -> None:
        """Add `entry` at the end, creating the file with its header if needed; whatever the
        file holds (hand edits, no final newline) stays as it is."""
        text = self.path.read_text(encoding="utf-8") if self.path.is_file() else ""
        if not text.strip():
            prefix = HEADER + "\n"
        elif text.endswith("\n\n"):
            prefix = ""
        else:
            prefix = "\n" if text.endswith("\n") else "\n\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w" if not text.strip() else "a", encoding="utf-8") as out:
            out.write(prefix + entry.render())

    def entries(self) -> list[ProgressEntry]:
        """Every entry in file order; text outside entries (the header, the user's own
        sections, which end an entry when they start with a level 1 or 2 heading) is skipped."""
        if not self.path.is_file():
            return []
        found: list[ProgressEntry] = []
        current: ProgressEntry | None = None
        body: list[str] = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            if SECTION.match(line):
                if current is not None:
                    current.learnings = _body(body)
                head = ENTRY.match(line)
                current = ProgressEntry(head["id"], head["title"].strip(), "") if head else None
                if current is not None:
                    found.append(current)
                body = []
                continue
            field = FIELD.match(line)
            if field and current is not None and not any(b.strip() for b in body):
                _set_field(current, field["key"], field["value"].strip())
                continue
            body.append(line)
        if current is not None:
            current.learnings = _body(body)
        return found

    def recent(self, n: int) -> list[ProgressEntry]:
        """The last `n` entries, oldest first."""
        return self.entries()[-n:] if n > 0 else []

    def render(self, n: int) -> str:
        """The last `n` entries as Markdown for the prompt ("" when there are none)."""
        text = "".join(e.render() for e in self.recent(n))
        return text.rstrip("\n") + "\n" if text else ""


def _body(lines: list[str]) -> str:
    return "\n".join(line[1:] if line.startswith("\\#") else line for line in lines).strip()


def _set_field(entry: ProgressEntry, key: str, value: str) -> None:
    if key == "when":
        entry.when = _epoch(value)
    elif key == "worker":
        entry.worker = value
    elif key == "outcome":
        entry.outcome = value
    elif key == "commit":
        entry.commit = value or None


def _epoch(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def read_notes(path: Path | str | None, limit: int = NOTES_MAX_CHARS) -> str:
    """What the agent wrote to its RALPH_NOTES file, at most `limit` characters ("" if none)."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(limit + 1)
    except OSError:
        return ""
    text = text.strip()
    if len(text) > limit:
        text = text[:limit].rstrip() + f"\n[… cut at {limit} characters]"
    return text


def notes_path(run_dir: Path) -> Path:
    """The RALPH_NOTES file of an attempt: in its run folder, so it is never committed."""
    return Path(run_dir) / NOTES_FILE


def progress_path(root: Path, settings: Settings) -> Path | None:
    """The progress file of a checkout, or None when the memory is off."""
    return Path(root) / settings.progress if settings.progress else None


def render_progress(root: Path, settings: Settings) -> str:
    """The `progress` value of the prompt: the last `progress_entries` entries, or ""."""
    path = progress_path(root, settings)
    if path is None or settings.progress_entries <= 0:
        return ""
    return ProgressLog(path).render(settings.progress_entries)


def record(workspace_path: Path, settings: Settings, entry: ProgressEntry) -> Path | None:
    """Append `entry` to the progress file of the checkout at `workspace_path`.

    Called by the loop after an attempt ends done and before it builds the task commit, so the
    entry is part of that commit. Returns the file's path, or None when the memory is off.
    """
    path = progress_path(workspace_path, settings)
    if path is None:
        return None
    ProgressLog(path).append(entry)
    ensure_union_merge(Path(workspace_path), settings.progress or "")
    return path


_UNION_DONE: set[tuple[str, str]] = set()  # (checkout, path) already set up by this process


def ensure_union_merge(checkout: Path, relpath: str) -> None:
    """Make git merge the progress file by keeping both sides' lines (parallel workers append
    to it on different branches), in the repository's own info/attributes: shared by all its
    worktrees, never committed, and the user's .gitattributes stays untouched. Once per
    checkout and process (a worker calls it for every task)."""
    key = (str(checkout), relpath)
    if key in _UNION_DONE:
        return
    _UNION_DONE.add(key)
    try:
        common = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return  # not a git checkout: nothing to merge
    attributes = Path(common) / "info" / "attributes"
    line = f"/{relpath} {ATTRIBUTE}"
    existing = attributes.read_text().splitlines() if attributes.is_file() else []
    if line in existing:
        return
    attributes.parent.mkdir(parents=True, exist_ok=True)
    with attributes.open("a") as out:
        if existing and existing[-1] != "" and not attributes.read_text().endswith("\n"):
            out.write("\n")
        out.write(line + "\n")
