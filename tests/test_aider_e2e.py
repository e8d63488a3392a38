"""The real `aider` CLI: offline (its API base on a closed loopback port), and through `ralph run`
against the scripted Anthropic server (no credentials, no network). Skipped without `aider`,
except under CI=true: .ci/run installs aider-chat in a virtualenv of its own."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from ralph.agents import get_agent
from ralph.process import AgentProcess
from tests.support.clis import add_task, clean_env, git_repo, ralph, require, task_commits
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.aider
MODEL = "anthropic/claude-sonnet-4-5"
# aider's diff format: an empty SEARCH creates the file
REPLY = "f.txt\n```\n<<<<<<< SEARCH\n=======\nhello\n>>>>>>> REPLACE\n```\n"


@pytest.fixture(scope="module", autouse=True)
def aider_installed() -> None:
    require("aider")


def aider_env(home: Path, url: str, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return clean_env(home, ANTHROPIC_API_KEY="test-key", ANTHROPIC_API_BASE=url,
                     ANTHROPIC_BASE_URL=url, LITELLM_LOCAL_MODEL_COST_MAP="True",
                     **extra)  # fmt: skip


@pytest.mark.slow  # aider retries a refused connection for about a minute before it exits
def test_aider_that_cannot_reach_its_api_is_network_down_not_an_agent_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    repo = git_repo(tmp_path / "repo")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "prompt.md").write_text("say hi")
    agent = get_agent("aider", {"model": MODEL})
    proc = AgentProcess(agent.argv("say hi", run_dir / "prompt.md"), cwd=repo, out_dir=run_dir,
                        env=aider_env(tmp_path / "home", url), stdin=agent.stdin("say hi"),
                        parser=agent.new_parser(), timeout=170)  # fmt: skip
    result = proc.run()
    assert result.ending == "exited" and proc.parser.report.is_error, result.tail()
    signal = proc.parser.final_signal(result.exit_code)
    assert signal is not None and signal.kind == "network_down", result.tail()


def test_aiders_history_files_and_tags_cache_stay_out_of_the_task_commit(tmp_path):
    repo = git_repo(tmp_path / "repo")
    toml = tmp_path / "ralph.toml"
    toml.write_text(f'agent = "aider"\n[agents.aider]\nmodel = "{MODEL}"\n')
    with ModelServer("text", reply=REPLY) as server:
        env = aider_env(tmp_path / "home", server.url, PWD=str(repo))
        task = add_task(repo, env, "Add f", "Create f.txt saying hello")
        out = ralph(repo, env, "run", "--config", str(toml), "--quiet")
    assert out.returncode == 0, out.stderr
    assert task_commits(repo) == {task: 1} and (repo / "f.txt").read_text() == "hello\n"
    files = subprocess.run(["git", "-C", str(repo), "log", "main", "--name-only", "--format="],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert "f.txt" in files
    assert not [f for f in files if f.startswith(".aider")], files  # history, tags cache
    (history,) = (repo / ".ralph" / "runs").glob("*/*/aider.chat.history.md")
    assert "Create f.txt saying hello" in history.read_text()
