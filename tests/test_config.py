"""ralph.toml / [tool.ralph]: defaults, durations, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ralph.config import Settings, load_settings
from ralph.errors import ConfigError


def test_defaults_without_a_config_file(tmp_path: Path):
    assert load_settings(tmp_path) == Settings()


def test_ralph_toml_is_read_with_durations_and_commands(tmp_path: Path):
    (tmp_path / "ralph.toml").write_text(
        'agent = "codex"\nlease = "10m"\ntask_timeout = 20\nidle_timeout = "off"\n'
        'verify = ["pytest -q", ["ruff", "check"]]\nmax_attempts = 5\n'
        '[vars]\nteam = "core"\n[agents.codex]\nmodel = "o4"\n'
    )
    s = load_settings(tmp_path)
    assert (s.agent, s.lease, s.task_timeout, s.idle_timeout) == ("codex", 600, 1200, None)
    assert s.verify == [["pytest", "-q"], ["ruff", "check"]]
    assert (s.max_attempts, s.vars, s.agent_settings("codex")) == (
        5,
        {"team": "core"},
        {"model": "o4"},
    )


def test_pyproject_tool_ralph_is_used_when_there_is_no_ralph_toml(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.ralph]\nbreaker = 2\n')
    assert load_settings(tmp_path).breaker == 2


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('agnet = "claude"', "unknown key 'agnet'"),
        ('lease = "soon"', "invalid lease 'soon'"),
        ("max_attempts = 0", "max_attempts must be a whole number"),
        ('no_changes = "maybe"', "no_changes must be one of"),
        ("verify = 3", "verify must be a command string or a list"),
        ('agents = { claude = "x" }', "agents.claude must be a table"),
        ("agent = ", "not valid TOML"),
    ],
)
def test_invalid_values_name_the_file_and_key(tmp_path: Path, text: str, words: str):
    (tmp_path / "ralph.toml").write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert words in info.value.message and "ralph.toml" in info.value.message
