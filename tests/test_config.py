"""ralph.toml / [tool.ralph]: defaults, durations, and errors that name the key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ralph.config import Settings, load_settings, parse_settings
from ralph.configschema import Table
from ralph.errors import ConfigError
from tests.support.clis import clean_env, git_repo, ralph

IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x"}  # fmt: skip


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


def test_ralph_local_toml_is_read_over_ralph_toml_with_tables_merged_key_by_key(tmp_path: Path):
    (tmp_path / "ralph.toml").write_text(
        'agent = "claude"\nlease = "10m"\n[agents.claude]\nmodel = "sonnet"\n'
    )
    (tmp_path / "ralph.local.toml").write_text(
        'lease = "20m"\n[agents.claude]\nenv = { ANTHROPIC_API_KEY = "sk-local-only" }\n'
    )
    s = load_settings(tmp_path)
    assert (s.agent, s.lease) == ("claude", 1200)
    assert s.agent_settings("claude") == {
        "model": "sonnet",
        "env": {"ANTHROPIC_API_KEY": "sk-local-only"},
    }
    (tmp_path / "ralph.toml").unlink()
    assert load_settings(tmp_path).agent_settings("claude") == {
        "env": {"ANTHROPIC_API_KEY": "sk-local-only"}
    }


def test_a_bad_key_in_ralph_local_toml_is_a_config_error_naming_it(tmp_path: Path):
    (tmp_path / "ralph.toml").write_text('agent = "claude"\n')
    (tmp_path / "ralph.local.toml").write_text('agnet = "codex"\n')
    with pytest.raises(ConfigError, match="ralph.local.toml: unknown key 'agnet'"):
        load_settings(tmp_path)


SECRET_ASSIGNMENT = re.compile(r"(API_KEY|TOKEN|PASSWORD|SECRET)\w*\"?\s*=", re.IGNORECASE)


@pytest.mark.parametrize("has_gitignore", [True, False], ids=["gitignore", "no-gitignore"])
def test_ralph_init_suggests_no_secret_in_a_committed_file_and_keeps_the_local_one_out_of_git(
    tmp_path: Path, has_gitignore: bool
):
    repo = git_repo(tmp_path / "repo")
    if has_gitignore:
        (repo / ".gitignore").write_text("node_modules")  # no final newline
        subprocess.run(["git", "-C", str(repo), "add", ".gitignore"], check=True)
        subprocess.run(["git", "-C", str(repo), "commit", "-qm", "ignore"], check=True,
                       env={**os.environ, **IDENTITY})  # fmt: skip
    (repo / "CLAUDE.md").write_text("# Notes\n")
    env = clean_env(tmp_path / "home")
    first = ralph(repo, env, "init")
    assert first.returncode == 0, first.stderr
    assert "ralph.local.toml" in first.stdout
    # Everything init wrote that git would see (what the user commits) suggests no secret.
    shown = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "-uall"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    committed = [line[3:] for line in shown.splitlines()]
    assert "ralph.toml" in committed and "ralph.local.toml" not in committed
    for name in committed:
        for line in (repo / name).read_text().splitlines():
            assert not SECRET_ASSIGNMENT.search(line), (name, line)
    assert "ralph.local.toml" in (repo / "ralph.toml").read_text()
    (repo / "ralph.local.toml").write_text('[agents.claude]\nenv = { ANTHROPIC_API_KEY = "k" }\n')
    ignored = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", "ralph.local.toml"])
    assert ignored.returncode == 0
    if has_gitignore:
        assert (repo / ".gitignore").read_text() == "node_modules\n/ralph.local.toml\n"
    else:
        assert not (repo / ".gitignore").exists()  # a new untracked file would dirty the tree
    again = ralph(repo, env, "init")
    assert again.returncode == 0
    if has_gitignore:
        assert (repo / ".gitignore").read_text() == "node_modules\n/ralph.local.toml\n"
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    assert exclude.count("ralph.local.toml") == (0 if has_gitignore else 1)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"agnet": "x"}, "unknown key 'agnet'"),
        ({"lease": [1]}, "invalid lease [1]"),
        ({"task_timeout": True}, "invalid task_timeout True"),
        ({"max_attempts": "3"}, "max_attempts must be a whole number >= 1, got '3'"),
        ({"max_attempts": True}, "max_attempts must be a whole number >= 1, got True"),
        ({"breaker": 2.0}, "breaker must be a whole number >= 1, got 2.0"),
        ({"max_discovered": -1}, "max_discovered must be a whole number >= 0, got -1"),
        ({"agent": "  "}, "agent must be a non-empty string, got '  '"),
        ({"progress": True}, "progress must be a path relative to the project, or false, got True"),
        ({"no_changes": 1}, "no_changes must be one of 'done', 'fail', got 1"),
        ({"capabilities": [1]}, "capabilities must be a list of strings, got [1]"),
        ({"verify": [["a", 1]]}, "verify must be a list of strings, got ['a', 1]"),
        ({"verify": "a 'b"}, "verify: cannot split \"a 'b\": No closing quotation"),
        ({"report": {"x": 1}}, "report must be a table with `write = true|false`, got {'x': 1}"),
        ({"report": {"write": 1}}, "report.write must be true or false"),
        ({"vars": 3}, "vars must be a table, got 3"),
        ({"agents": {"claude": {}, "codex": 3}}, "agents.codex must be a table"),
    ],
)  # fmt: skip
def test_each_kind_of_bad_value_is_one_line_naming_the_key_and_what_it_takes(
    table: dict, message: str
):
    with pytest.raises(ConfigError) as info:
        parse_settings(table)
    assert info.value.message == "ralph.toml: " + message


def test_the_declared_config_keys_are_the_settings_fields():
    assert set(Table.__struct_fields__) == set(Settings.__dataclass_fields__) - {"source"}


def test_defaults_need_no_validation_library(tmp_path: Path):
    """Without a config file nothing is validated: msgspec's import is not paid."""
    code = "import sys, pathlib; from ralph.config import load_settings\n"
    code += "load_settings(pathlib.Path(sys.argv[1]))\n"
    code += "print('msgspec' in sys.modules)"
    args = [sys.executable, "-c", code, str(tmp_path)]
    assert subprocess.run(args, capture_output=True, text=True, check=True).stdout == "False\n"
    (tmp_path / "ralph.toml").write_text("breaker = 2\n")
    assert subprocess.run(args, capture_output=True, text=True, check=True).stdout == "True\n"
