"""What an attempt leaves in its run directory (`.ralph/runs/<task>/<n>/`) besides the agent's
own output: the task's memory entry for its commit, and `result.json`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from ralph import memory, prd
from ralph.agents.base import AgentReport
from ralph.config import Settings
from ralph.control import TaskOutcome
from ralph.models import Task
from ralph.process import ProcessResult


def remember(settings: Settings, where: Path, run_dir: Path, task: Task, worker: str) -> set[str]:
    """The RALPH memory and prd.json, for the task's own commit: an entry with what the agent
    says it learned (its $RALPH_NOTES) appended to the progress log, and the story's `passes`
    set. The next fresh agent reads them in its prompt. Returns the paths written (changes of
    ralph's own, which alone do not make a task's work)."""
    notes = memory.read_notes(memory.notes_path(run_dir))
    entry = memory.ProgressEntry(task.id, task.title, "done", None, worker, time.time(), notes)
    paths = set()
    written = memory.record(where, settings, entry)
    if written is not None:
        paths.add(str(written.relative_to(where)))
    if settings.prd and prd.mark_passed(where, settings.prd, task, notes):
        paths.add(settings.prd)
    return paths


def write_result(
    run_dir: Path,
    record: TaskOutcome,
    result: ProcessResult | None,
    report: AgentReport,
    policy: str,
) -> None:
    """`result.json`: how the attempt ended, for people and scripts reading the run dir."""
    data = {
        **asdict(record),
        "exit_code": result.exit_code if result else None,
        "ending": result.ending if result else None,
        "output_bytes": result.bytes_out if result else 0,
        "input_tokens": report.input_tokens,
        "output_tokens": report.output_tokens,
        "session_id": report.session_id,
        "num_turns": report.num_turns,
        "sandbox": policy,
        "kind": "task",  # a conflict resolution's own result.json says "resolve"
    }
    (run_dir / "result.json").write_text(json.dumps(data, indent=2) + "\n")
