"""The RALPH memory (ralph.memory): a Markdown progress log that survives hand edits, is read
back for the prompt, merges without conflicts across parallel branches, and `ralph logs
--progress` shows it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ralph.config import Settings, parse_settings
from ralph.errors import ConfigError
from ralph.memory import ProgressEntry, ProgressLog, read_notes, record, render_progress
from ralph.models import Task
from ralph.prompts import load_prompt, prompt_context


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    (root / "README.md").write_text("hello\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "start")
    return root


def entry(n: int, learnings: str = "") -> ProgressEntry:
    return ProgressEntry(
        task_id=f"rl-{n}",
        title=f"Task number {n}",
        outcome="done",
        worker="Alpha",
        when=1_800_000_000.0 + n,
        learnings=learnings or f"Lesson {n}.",
    )


def test_entries_read_back_with_their_fields_and_learnings(tmp_path: Path):
    log = ProgressLog(tmp_path / "progress.md")
    log.append(entry(1, "Use `make test`, not pytest.\n\n# Heading in the notes\nmore"))
    log.append(entry(2))
    back = log.entries()
    assert [(e.task_id, e.title, e.worker, e.outcome) for e in back] == [
        ("rl-1", "Task number 1", "Alpha", "done"),
        ("rl-2", "Task number 2", "Alpha", "done"),
    ]
    assert back[0].when == 1_800_000_001.0
    assert back[0].learnings == "Use `make test`, not pytest.\n\n# Heading in the notes\nmore"
    assert (tmp_path / "progress.md").read_text().startswith("# Progress\n")


def test_recent_and_render_give_the_last_n_oldest_first(tmp_path: Path):
    log = ProgressLog(tmp_path / "progress.md")
    for n in range(1, 8):
        log.append(entry(n))
    assert [e.task_id for e in log.recent(3)] == ["rl-5", "rl-6", "rl-7"]
    assert log.recent(0) == []
    text = log.render(2)
    assert text.index("## Task rl-6") < text.index("## Task rl-7")
    assert "rl-5" not in text and "Lesson 7." in text


def test_appending_to_a_hand_edited_file_keeps_the_edits_and_still_parses(tmp_path: Path):
    path = tmp_path / "progress.md"
    path.write_text(
        "# Our notes\n\n## Codebase patterns\n- tabs, not spaces\n\n"
        "## Task rl-1: First\n- outcome: done\n\nLearned one thing.\n\n"
        "## Release checklist\nbump the version"  # no final newline
    )
    log = ProgressLog(path)
    log.append(entry(2))
    text = path.read_text()
    assert text.startswith("# Our notes\n\n## Codebase patterns\n- tabs, not spaces\n")
    assert "bump the version\n\n## Task rl-2: Task number 2\n" in text
    back = log.entries()
    assert [e.task_id for e in back] == ["rl-1", "rl-2"]
    assert back[0].learnings == "Learned one thing."  # the user's section ends the entry


def test_an_empty_or_missing_file_gets_the_header(tmp_path: Path):
    path = tmp_path / "sub" / "progress.md"
    ProgressLog(path).append(entry(1))
    assert path.read_text().count("# Progress") == 1
    assert ProgressLog(tmp_path / "none.md").entries() == []


def test_read_notes_is_bounded_and_empty_without_a_file(tmp_path: Path):
    notes = tmp_path / "notes.md"
    assert read_notes(notes) == ""
    assert read_notes(None) == ""
    notes.write_text("x" * 10_000)
    text = read_notes(notes, limit=100)
    assert text.startswith("x" * 100) and "cut at 100 characters" in text and len(text) < 200


def test_record_appends_in_the_checkout_and_merges_parallel_branches_without_conflict(
    repo: Path,
):
    settings = Settings()
    git(repo, "switch", "-q", "-c", "ralph/a")
    assert record(repo, settings, entry(1)) == repo / "progress.md"
    git(repo, "add", "progress.md")
    git(repo, "commit", "-q", "-m", "task a")
    git(repo, "switch", "-q", "-c", "ralph/b", "main")
    record(repo, settings, entry(2))
    git(repo, "add", "progress.md")
    git(repo, "commit", "-q", "-m", "task b")
    # Two workers appended to the same file on their own branches: the rebase keeps both.
    git(repo, "rebase", "-q", "ralph/a")
    assert [e.task_id for e in ProgressLog(repo / "progress.md").entries()] == ["rl-1", "rl-2"]
    assert "/progress.md merge=union" in (repo / ".git" / "info" / "attributes").read_text()
    assert not (repo / ".gitattributes").exists()


def test_record_does_nothing_when_the_memory_is_off(repo: Path):
    settings = parse_settings({"progress": False})
    assert record(repo, settings, entry(1)) is None
    assert not (repo / "progress.md").exists()
    assert render_progress(repo, settings) == ""


def test_config_keys_are_validated():
    s = parse_settings({"progress": "docs/progress.md", "progress_entries": 2})
    assert (s.progress, s.progress_entries) == ("docs/progress.md", 2)
    assert Settings().progress == "progress.md" and Settings().progress_entries == 5
    with pytest.raises(ConfigError, match="progress_entries"):
        parse_settings({"progress_entries": -1})
    with pytest.raises(ConfigError, match="progress must be"):
        parse_settings({"progress": "/abs/path.md"})


def test_the_default_prompt_shows_recent_progress_and_asks_for_notes(tmp_path: Path):
    settings = parse_settings({"progress_entries": 1})
    log = ProgressLog(tmp_path / "progress.md")
    log.append(entry(1))
    log.append(entry(2, "The API needs a trailing slash."))
    context = prompt_context(
        Task(id="rl-9", title="Next"),
        attempt=1,
        previous_failure=None,
        worker="w",
        repo=tmp_path,
        agent="demo",
        progress=render_progress(tmp_path, settings),
    )
    text = load_prompt(tmp_path).render(context)
    assert "The API needs a trailing slash." in text and "Lesson 1." not in text
    assert "$RALPH_NOTES" in text
    assert "--discovered-from $RALPH_TASK_ID" in text
    quiet = load_prompt(tmp_path).render({**context, "progress": ""})
    assert "What the agents before you learned" not in quiet


def test_logs_progress_shows_the_file(repo: Path):
    ralph = [sys.executable, "-m", "ralph"]
    out = subprocess.run(
        [*ralph, "logs", "--progress"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert "No progress log yet" in out.stdout
    record(repo, Settings(), entry(1, "Keep the parser pure."))
    out = subprocess.run(
        [*ralph, "logs", "--progress"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert "## Task rl-1: Task number 1" in out.stdout and "Keep the parser pure." in out.stdout
    missing = subprocess.run([*ralph, "logs"], cwd=repo, capture_output=True, text=True)
    assert missing.returncode == 2 and "missing ID" in missing.stderr
