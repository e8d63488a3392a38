"""Adapters: argv per CLI (checked against each CLI's --help), prompt passing, registry, config."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ralph.agents import get_agent, known_agents
from ralph.agents.base import Agent
from ralph.errors import ConfigError

PROMPT_FILE = Path("/srv/repo/.ralph/runs/rl-1/1/prompt.md")
HOSTILE = "--dangerously-delete-everything; rm -rf /"


def argv(name: str, prompt: str = "do it", **settings: object) -> list[str]:
    return get_agent(name, settings).argv(prompt, PROMPT_FILE)


def test_every_builtin_is_registered():
    assert known_agents() == sorted(
        [
            "aider",
            "amp",
            "claude",
            "codex",
            "command",
            "copilot",
            "cursor",
            "demo",
            "gemini",
            "opencode",
            "qwen",
        ]
    )


def test_claude_reads_the_prompt_on_stdin_with_stream_json():
    agent = get_agent("claude")
    assert agent.argv("do it", PROMPT_FILE) == [
        "claude", "-p", "--output-format", "stream-json", "--verbose",
        "--dangerously-skip-permissions",
    ]  # fmt: skip
    assert agent.stdin("do it") == b"do it"


def test_model_and_args_from_settings_come_after_the_fixed_flags():
    got = argv("claude", model="opus", args=["--max-turns", "30"])
    assert got[-3:] == ["--model=opus", "--max-turns", "30"]


def test_codex_reads_stdin_through_dash_and_may_write_the_workspace():
    agent = get_agent("codex")
    got = agent.argv("do it", PROMPT_FILE)
    assert got[:3] == ["codex", "exec", "--json"]
    assert "--skip-git-repo-check" in got
    assert got[got.index("--sandbox") + 1] == "workspace-write"
    assert got[-1] == "-" and agent.stdin("do it") == b"do it"


def test_gemini_is_headless_on_stdin_in_yolo_mode_in_an_untrusted_folder():
    agent = get_agent("gemini")
    got = agent.argv("do it", PROMPT_FILE)
    assert got[got.index("--output-format") + 1] == "stream-json"
    assert got[got.index("--approval-mode") + 1] == "yolo"
    assert "--skip-trust" in got and "-p" not in got
    assert agent.stdin("do it") == b"do it"


def test_aider_reads_the_prompt_file_and_leaves_commits_to_ralph():
    agent = get_agent("aider")
    got = agent.argv("do it", PROMPT_FILE)
    assert {"--yes-always", "--no-auto-commits", "--no-dirty-commits"} <= set(got)
    assert got[-1] == f"--message-file={PROMPT_FILE}"
    assert agent.stdin("do it") is None


def test_amp_gets_the_prompt_in_argv_and_an_empty_stdin_its_login_flow_cannot_read():
    agent = get_agent("amp")
    got = agent.argv("do it", PROMPT_FILE)
    assert got[0] == "amp" and got[-2:] == ["--stream-json", "--execute=do it"]
    assert "--dangerously-allow-all" in got and agent.stdin("do it") is None


def test_amp_points_at_the_prompt_file_when_the_prompt_is_too_long_for_argv():
    got = get_agent("amp").argv("x" * 200_000, PROMPT_FILE)
    assert got[-1] == f"--execute=Read the task in {PROMPT_FILE} and do it."


def test_amp_refuses_a_model_setting_and_says_what_to_use():
    with pytest.raises(ConfigError, match="--mode"):
        get_agent("amp", {"model": "gpt"})


def test_opencode_and_cursor_take_the_prompt_after_double_dash():
    assert argv("opencode")[:5] == ["opencode", "run", "--format", "json", "--auto"]
    assert argv("cursor")[:5] == ["cursor-agent", "-p", "--output-format", "stream-json", "--force"]
    for name in ("opencode", "cursor"):
        assert argv(name)[-2:] == ["--", "do it"]
        assert get_agent(name).stdin("do it") is None


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("claude", {"prompt_mode": "arg"}),
        ("codex", {"prompt_mode": "arg"}),
        ("gemini", {"prompt_mode": "arg"}),
        ("aider", {"prompt_mode": "arg"}),
        ("amp", {"prompt_mode": "arg"}),
        ("opencode", {}),
        ("cursor", {}),
        ("command", {"command": ["my-agent", "--fast"], "prompt_mode": "arg"}),
        ("command", {"command": ["my-agent", "--task={prompt}"], "prompt_mode": "arg"}),
    ],
)
def test_a_prompt_that_looks_like_a_flag_never_becomes_one(name, settings):
    got = argv(name, HOSTILE, **settings)
    bare = [a for a in got if a == HOSTILE]
    if bare:  # passed as its own argument: only ever after the end-of-options marker
        assert "--" in got and got.index("--") < got.index(HOSTILE)
    else:  # or glued to its flag as --flag=<text>, which no parser splits
        (glued,) = [a for a in got if a.endswith("=" + HOSTILE)]
        assert glued.startswith("--")


def test_command_agent_gets_the_prompt_on_stdin_by_default():
    agent = get_agent("command", {"command": "python3 agent.py --quiet"})
    assert agent.argv("do it", PROMPT_FILE) == ["python3", "agent.py", "--quiet"]
    assert agent.stdin("do it") == b"do it"


def test_command_agent_passes_the_prompt_file_in_file_mode_or_where_asked():
    assert argv("command", command=["a"], prompt_mode="file") == ["a", str(PROMPT_FILE)]
    got = argv("command", command=["a", "--in", "{prompt_file}"], prompt_mode="file")
    assert got == ["a", "--in", str(PROMPT_FILE)]


def test_command_agent_without_a_command_is_a_config_error():
    with pytest.raises(ConfigError, match="needs a command"):
        get_agent("command")


def test_unknown_agent_names_the_known_ones():
    with pytest.raises(ConfigError) as err:
        get_agent("clade")
    assert "clade" in err.value.line() and "claude, codex" in err.value.line()
    assert err.value.exit_code == 8


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"modle": "x"}, "unknown setting 'modle'"),
        ({"prompt_mode": "pipe"}, "prompt_mode 'pipe'"),
        ({"args": 3}, "args must be"),
        ({"command": []}, "command is empty"),
        ({"command": "claude 'unclosed"}, "quotation"),
        ({"env": ["A=1"]}, "env must be a table"),
    ],
)
def test_bad_agent_settings_are_config_errors_naming_the_table(settings, problem):
    with pytest.raises(ConfigError, match="agents.claude") as err:
        get_agent("claude", settings)
    assert problem in err.value.line()


def test_configured_env_is_added_to_the_agent_environment():
    assert get_agent("codex", {"env": {"CODEX_HOME": "/x", "N": 3}}).env() == {
        "CODEX_HOME": "/x", "N": "3",
    }  # fmt: skip


def test_claude_env_asks_for_sandbox_mode_only_as_root(monkeypatch):
    monkeypatch.setenv("IS_SANDBOX", "yes")  # claude only accepts "1"
    monkeypatch.delenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", raising=False)
    env = get_agent("claude").env()
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env.get("IS_SANDBOX") == ("1" if os.geteuid() == 0 else None)
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "0")
    assert "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" not in get_agent("claude").env()
    assert get_agent("claude", {"env": {"IS_SANDBOX": "0"}}).env()["IS_SANDBOX"] == "0"


@pytest.mark.parametrize(
    "name", ["claude", "codex", "gemini", "aider", "opencode", "amp", "cursor", "qwen", "copilot"]
)
def test_missing_binary_names_it_and_how_to_install(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    agent = get_agent(name)
    with pytest.raises(ConfigError) as err:
        agent.check_installed()
    assert repr(agent.executable) in err.value.line()
    assert agent.install_hint and agent.install_hint in err.value.line()


def test_installed_binary_resolves_to_its_path(tmp_path, monkeypatch):
    exe = tmp_path / "claude"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert get_agent("claude").check_installed() == str(exe)


def test_third_party_agents_register_through_the_entry_point_group(tmp_path):
    (tmp_path / "myagent.py").write_text(
        textwrap.dedent("""
        from ralph.agents.base import Agent

        class Mine(Agent):
            executable = "mine"
        """)
    )
    dist = tmp_path / "myagent-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myagent\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ralph.agents]\nmine = myagent:Mine\n")
    code = (
        "from ralph.agents import get_agent, known_agents;"
        "print(known_agents()); print(get_agent('mine', {'args': ['-q']}).argv('p', None))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "'mine'" in out[0] and "'claude'" in out[0]
    assert out[1] == "['mine', '-q']"


def test_base_agent_is_usable_as_is_for_simple_plugins():
    class Echo(Agent):
        name = "echo"
        executable = "echo"
        prompt_mode = "file"

    assert Echo().argv("p", PROMPT_FILE) == ["echo", str(PROMPT_FILE)]


def test_aider_history_files_go_to_the_attempts_run_folder_not_the_workspace():
    got = get_agent("aider").argv("do it", PROMPT_FILE)
    assert f"--chat-history-file={PROMPT_FILE.parent / 'aider.chat.history.md'}" in got
    assert f"--input-history-file={PROMPT_FILE.parent / 'aider.input.history'}" in got


def test_opencode_gets_a_database_of_its_own_per_attempt(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENCODE_DB", raising=False)
    got = get_agent("opencode").attempt_env(tmp_path / "run-1")
    assert got == {"OPENCODE_DB": str(tmp_path / "run-1" / "opencode.db")}
    assert get_agent("opencode", {"env": {"OPENCODE_DB": "mine.db"}}).attempt_env(tmp_path) == {}
    assert get_agent("claude").attempt_env(tmp_path) == {}


def test_qwen_reads_the_prompt_on_stdin_in_yolo_stream_json_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("QWEN_CODE_SYSTEM_DEFAULTS_PATH", raising=False)
    agent = get_agent("qwen", {"model": "qwen3-coder-plus"})
    got = agent.argv(HOSTILE, PROMPT_FILE)
    assert got[got.index("--output-format") + 1] == "stream-json"
    assert got[got.index("--approval-mode") + 1] == "yolo" and HOSTILE not in got
    assert "--model=qwen3-coder-plus" in got and agent.stdin(HOSTILE) == HOSTILE.encode()
    env = agent.attempt_env(tmp_path)
    defaults = Path(env["QWEN_CODE_SYSTEM_DEFAULTS_PATH"])
    assert defaults.parent == tmp_path and '"maxRetries": 0' in defaults.read_text()


def test_copilot_gets_the_prompt_as_one_prompt_argument_never_a_flag():
    agent = get_agent("copilot")
    got = agent.argv(HOSTILE, PROMPT_FILE)
    assert got[:5] == ["copilot", "--output-format", "json", "--allow-all", "--no-auto-update"]
    assert got[-1] == f"--prompt={HOSTILE}" and agent.stdin(HOSTILE) is None
    assert get_agent("copilot").argv("x" * 200_000, PROMPT_FILE)[-1] == (
        f"--prompt=Read the task in {PROMPT_FILE} and do it."
    )


def test_aiders_tags_cache_is_dropped_before_collecting_unless_the_repo_tracks_it(tmp_path):
    from tests.support.clis import git_repo

    repo = git_repo(tmp_path / "repo")
    (repo / ".aider.tags.cache.v4").mkdir()
    (repo / ".aider.tags.cache.v4" / "cache.db").write_text("x")
    (repo / ".aider.tags.cache.v3").write_text("tracked by the user")
    subprocess.run(["git", "-C", str(repo), "add", ".aider.tags.cache.v3"], check=True)
    assert get_agent("aider").drop_scratch(repo) == [".aider.tags.cache.v4"]
    assert not (repo / ".aider.tags.cache.v4").exists()
    assert (repo / ".aider.tags.cache.v3").exists()
    assert get_agent("claude").drop_scratch(repo) == []
