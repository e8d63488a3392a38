"""The real `qwen` (qwen-code) CLI through `ralph run`, against the scripted Anthropic server on
loopback through qwen's anthropic provider (no credentials, no network). Skipped without `qwen`,
except in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.clis import (
    RUN_SHAPES,
    add_task,
    check_each_task_done_once,
    check_policy,
    clean_env,
    git_repo,
    ralph,
    require,
)
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.qwen
# 2 calls a task (the write_file call, then the answer) of 1200 in / 60 out tokens each, priced
# by ralph as claude-sonnet-4 ($3 / $15 per million): qwen reports tokens only
TASK_COST = (2400 * 3.0 + 120 * 15.0) / 1_000_000


@pytest.fixture(scope="module", autouse=True)
def qwen_installed() -> None:
    require("qwen")


def config(tmp_path: Path) -> Path:
    """A ralph.toml outside the repo: qwen's anthropic provider (the server URL is in the env);
    and the HOME qwen needs to exist."""
    (tmp_path / "home").mkdir(exist_ok=True)
    path = tmp_path / "ralph.toml"
    path.write_text('agent = "qwen"\n[agents.qwen]\nmodel = "claude-sonnet-4-5"\n'
                    'args = ["--auth-type", "anthropic"]\n')  # fmt: skip
    return path


@pytest.mark.parametrize(("workers", "sandbox"), RUN_SHAPES)
def test_ralph_run_with_qwen_commits_each_task_once_with_tokens_and_estimated_cost(
    tmp_path, workers, sandbox
):
    repo = git_repo(tmp_path / "repo")
    with ModelServer("write") as server:
        env = clean_env(tmp_path / "home", ANTHROPIC_BASE_URL=server.url,
                        ANTHROPIC_API_KEY="test-key", PWD=str(repo))  # fmt: skip
        env["RALPH_SANDBOX"] = sandbox  # on: bwrap, network = "allow"
        toml = config(tmp_path)
        tasks = [add_task(repo, env, f"Add f{n}", f"WRITE f{n}.txt: file {n}")
                 for n in range(workers + 1)]  # one worker does two  # fmt: skip
        out = ralph(repo, env, "run", "--config", str(toml),
                    "--workers", str(workers), "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    check_each_task_done_once(repo, tasks, (2400, 120), TASK_COST)
    check_policy(repo, env, tasks[0], sandbox)


def test_ralph_run_with_qwen_stops_on_a_401_without_counting_an_attempt(tmp_path):
    from ralph.store import open_store

    repo = git_repo(tmp_path / "repo")
    with ModelServer("401") as server:
        env = clean_env(tmp_path / "home", ANTHROPIC_BASE_URL=server.url,
                        ANTHROPIC_API_KEY="bad-key")  # fmt: skip
        toml = config(tmp_path)
        task = add_task(repo, env, "Add f", "WRITE f.txt: f")
        out = ralph(repo, env, "run", "--config", str(toml), "--quiet")
    assert out.returncode == 10, out.stderr
    assert "invalid x-api-key" in out.stderr
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.get(task).attempts == 0
