"""Prompt templates: lookup order, StrictUndefined, errors naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ralph.errors import ConfigError
from ralph.models import Task
from ralph.prompts import (
    Template,
    builtin_prompt_path,
    find_prompt,
    load_commit_message,
    load_prompt,
    prompt_context,
    sample_context,
)

TOP = Path(__file__).resolve().parents[1]


def test_the_shipped_template_is_the_top_level_one():
    assert builtin_prompt_path().read_text() == (TOP / "prompts" / "task.md.j2").read_text()


def test_lookup_order_is_flag_then_config_then_project_then_builtin(tmp_path: Path):
    assert find_prompt(tmp_path) == builtin_prompt_path()
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "task.md.j2").write_text("project\n")
    (tmp_path / "config.j2").write_text("config\n")
    (tmp_path / "flag.j2").write_text("flag\n")
    assert find_prompt(tmp_path).name == "task.md.j2"
    assert find_prompt(tmp_path, None, "config.j2").name == "config.j2"
    assert find_prompt(tmp_path, "flag.j2", "config.j2").name == "flag.j2"
    with pytest.raises(ConfigError, match="missing.j2 does not exist"):
        find_prompt(tmp_path, "missing.j2")


def test_default_prompt_carries_task_attempt_failure_and_blockers(tmp_path: Path):
    task = Task(id="rl-1", title="Parse", description="Write parse()", labels=["core"], attempts=1)
    context = prompt_context(
        task,
        attempt=2,
        previous_failure="pytest: 3 failed",
        worker="w1",
        repo=tmp_path,
        agent="claude",
        blockers=[{"id": "rl-0", "title": "Lexer", "status": "done"}],
    )
    text = load_prompt(tmp_path).render(context)
    for expected in (
        "# Task rl-1: Parse",
        "Write parse()",
        "Labels: core",
        "- rl-0: Lexer",
        "Attempt 2",
        "pytest: 3 failed",
        str(tmp_path),
    ):
        assert expected in text


def test_syntax_error_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "bad.j2"
    bad.write_text("line one\n{{ task.id }}\n{% for %}\n")
    with pytest.raises(ConfigError, match=r"bad\.j2:3: template error"):
        load_prompt(tmp_path, bad)


def test_undefined_variable_fails_on_the_sample_before_any_agent(tmp_path: Path):
    tpl = tmp_path / "t.j2"
    tpl.write_text("ok {{ task.title }}\n{{ vars.team }}\n")
    template = load_prompt(tmp_path, tpl)
    with pytest.raises(ConfigError, match=r"t\.j2:2: .*'team'"):
        template.render(sample_context(tmp_path, "w", "claude"))
    assert "Backend" in template.render(
        sample_context(tmp_path, "w", "claude", {"team": "Backend"})
    )


def test_commit_message_has_title_and_trailers():
    text = load_commit_message(None).render(
        {
            "task": {"id": "rl-1", "title": "Parse"},
            "agent": "claude",
            "worker": "w1",
            "cost": "$0.0100",
        }
    )
    assert text == "Parse\n\nTask: rl-1\nAgent: claude\nWorker: w1\nCost: $0.0100\n"
    with pytest.raises(ConfigError, match="commit_message:1"):
        Template.from_source("{{ task.nope }}", "commit_message").render({"task": {}})
