"""The real `gemini` CLI through `ralph run`, against the scripted Gemini API server on loopback
(no credentials, no network). Skipped without `gemini`, except in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from ralph.store import open_store
from tests.support.clis import (
    RUN_SHAPES,
    add_task,
    check_each_task_done_once,
    check_policy,
    clean_env,
    gemini_home,
    git_repo,
    ralph,
    require,
)
from tests.support.model_server import GeminiServer

pytestmark = pytest.mark.gemini
# per task: the router's call, the write_file call, the answer; 1200 in / 60 out tokens each
TASK_COST = (3600 * 1.0 + 180 * 4.0) / 1_000_000


@pytest.fixture(scope="module", autouse=True)
def gemini_installed() -> None:
    require("gemini")


def config(tmp_path: Path) -> Path:
    """A ralph.toml outside the repo: gemini, and a price for the models this gemini picks."""
    path = tmp_path / "ralph.toml"
    prices = "input = 1.0\noutput = 4.0\n"  # the routing model's call and the main one's
    path.write_text(
        f'agent = "gemini"\n[prices."gemini-3.5-flash-lite"]\n{prices}'
        f'[prices."gemini-3.8-flash"]\n{prices}'
    )
    return path


def env_for(tmp_path: Path, server: GeminiServer, auth: str | None = "gemini-api-key"):
    home = gemini_home(tmp_path / "home", auth)
    return clean_env(home, GEMINI_API_KEY="test-key", GOOGLE_GEMINI_BASE_URL=server.url)


@pytest.mark.parametrize(("workers", "sandbox"), RUN_SHAPES)
def test_ralph_run_with_gemini_commits_each_task_once_with_tokens_and_estimated_cost(
    tmp_path, workers, sandbox
):
    repo = git_repo(tmp_path / "repo")
    with GeminiServer("write") as server:
        env = env_for(tmp_path, server)
        env["RALPH_SANDBOX"] = sandbox  # on: bwrap, network = "allow"
        tasks = [add_task(repo, env, f"Add f{n}", f"WRITE f{n}.txt: file {n}")
                 for n in range(workers + 1)]  # one worker does two  # fmt: skip
        out = ralph(repo, env, "run", "--config", str(config(tmp_path)),
                    "--workers", str(workers), "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    check_each_task_done_once(repo, tasks, (3600, 180), TASK_COST)
    check_policy(repo, env, tasks[0], sandbox)


def test_ralph_run_with_gemini_without_an_auth_method_stops_before_any_claim(tmp_path):
    repo = git_repo(tmp_path / "repo")
    with GeminiServer("write") as server:
        env = env_for(tmp_path, server, auth=None)
        task = add_task(repo, env, "Add f", "WRITE f.txt: f")
        out = ralph(repo, env, "run", "--config", str(config(tmp_path)), "--quiet")
        calls = len(server.requests)
    assert out.returncode == 10, out.stderr
    assert "settings.json" in out.stderr and calls == 0
    store = open_store(repo / ".ralph" / "ralph.db")
    try:
        assert store.get(task).attempts == 0 and store.attempts() == []
    finally:
        store.close()
