"""The real GitHub Copilot CLI (`copilot`) through `ralph run`, against the scripted Responses API
server on loopback as a BYOK provider (COPILOT_PROVIDER_BASE_URL, COPILOT_OFFLINE: no GitHub
login, no network). Skipped without `copilot`, except in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from ralph.store import open_store
from tests.support.clis import (
    MODEL,
    RUN_SHAPES,
    add_task,
    check_policy,
    clean_env,
    git_repo,
    ralph,
    require,
    task_commits,
    warm_copilot_home,
)
from tests.support.model_server import ResponsesServer

pytestmark = pytest.mark.copilot


@pytest.fixture(scope="module", autouse=True)
def copilot_installed() -> None:
    require("copilot")


def copilot_env(home: Path, url: str, **extra: str) -> dict[str, str]:
    warm_copilot_home(home)
    return clean_env(home, COPILOT_PROVIDER_BASE_URL=f"{url}/v1", COPILOT_PROVIDER_WIRE_API=
                     "responses", COPILOT_PROVIDER_API_KEY="test-provider-key",
                     COPILOT_MODEL=MODEL, COPILOT_OFFLINE="true", **extra)  # fmt: skip


@pytest.mark.parametrize(("workers", "sandbox"), RUN_SHAPES)
def test_ralph_run_with_copilot_commits_each_task_once(tmp_path, workers, sandbox):
    repo = git_repo(tmp_path / "repo")
    with ResponsesServer("write") as server:
        env = copilot_env(tmp_path / "home", server.url, PWD=str(repo), RALPH_SANDBOX=sandbox)
        tasks = [add_task(repo, env, f"Add f{n}", f"WRITE f{n}.txt: file {n}")
                 for n in range(workers + 1)]  # one worker does two  # fmt: skip
        out = ralph(repo, env, "run", "--agent", "copilot", "--workers", str(workers), "--quiet")
    assert out.returncode == 0, out.stderr
    assert task_commits(repo) == {t: 1 for t in tasks}
    for n in range(len(tasks)):
        assert (repo / f"f{n}.txt").read_text() == f"file {n}"
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert {store.get(t).status for t in tasks} == {"done"}
        done = [a for a in store.attempts() if a.outcome == "success"]
        assert len(done) == len(tasks) and all(a.session_id for a in done)
        # copilot reports premium requests, no tokens and no dollars: unknown, not zero
        assert all((a.input_tokens, a.output_tokens, a.cost_usd) == (None, None, None)
                   for a in done)  # fmt: skip
    check_policy(repo, env, tasks[0], sandbox)


def test_ralph_run_with_copilot_stops_on_a_401_without_counting_an_attempt(tmp_path):
    repo = git_repo(tmp_path / "repo")
    with ResponsesServer("401") as server:
        env = copilot_env(tmp_path / "home", server.url)
        task = add_task(repo, env, "Add f", "WRITE f.txt: f")
        out = ralph(repo, env, "run", "--agent", "copilot", "--quiet")
    assert out.returncode == 10, out.stderr
    assert "could not authenticate" in out.stderr and "no attempt was counted" in out.stderr
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.get(task).attempts == 0
