"""The real `codex` CLI through `ralph run`, against the scripted Responses API server on
loopback (no credentials, no network). Skipped without `codex`, except in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from ralph.store import open_store
from tests.support.clis import (
    KEY_VAR,
    MODEL,
    RUN_SHAPES,
    add_task,
    check_each_task_done_once,
    check_policy,
    clean_env,
    codex_args,
    git_repo,
    ralph,
    require,
    toml_list,
)
from tests.support.model_server import ResponsesServer

pytestmark = pytest.mark.codex
# 2 calls a task (the exec_command call, then the answer) of 1200 in / 60 out tokens each
TASK_COST = (2400 * 2.0 + 120 * 8.0) / 1_000_000


@pytest.fixture(scope="module", autouse=True)
def codex_installed() -> None:
    require("codex")


def config(tmp_path: Path, url: str) -> Path:
    """A ralph.toml outside the repo: codex on the mock provider, a price for its model."""
    path = tmp_path / "ralph.toml"
    path.write_text(
        f'agent = "codex"\n[agents.codex]\nmodel = "{MODEL}"\nargs = {toml_list(codex_args(url))}\n'
        f'[prices."{MODEL}"]\ninput = 2.0\noutput = 8.0\n'
    )
    return path


@pytest.mark.parametrize(("workers", "sandbox"), [*RUN_SHAPES, (2, "off")])
def test_ralph_run_with_codex_commits_each_task_once_with_tokens_and_estimated_cost(
    tmp_path, workers, sandbox
):
    repo = git_repo(tmp_path / "repo")
    with ResponsesServer("write") as server:
        env = clean_env(tmp_path / "home", **{KEY_VAR: "test-key"})
        env["RALPH_SANDBOX"] = sandbox  # on: bwrap, network = "allow"
        tasks = [add_task(repo, env, f"Add f{n}", f"WRITE f{n}.txt: file {n}")
                 for n in range(workers + 1)]  # one worker does two  # fmt: skip
        out = ralph(repo, env, "run", "--config", str(config(tmp_path, server.url)),
                    "--workers", str(workers), "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    check_each_task_done_once(repo, tasks, (2400, 120), TASK_COST)
    check_policy(repo, env, tasks[0], sandbox)


def test_ralph_run_with_codex_stops_when_the_provider_key_is_missing(tmp_path):
    repo = git_repo(tmp_path / "repo")
    with ResponsesServer("write") as server:
        env = clean_env(tmp_path / "home")  # KEY_VAR unset
        task = add_task(repo, env, "Add f", "WRITE f.txt: f")
        out = ralph(repo, env, "run", "--config", str(config(tmp_path, server.url)), "--quiet")
        calls = len(server.response_requests)
    assert out.returncode == 10, out.stderr
    assert KEY_VAR in out.stderr and calls == 0
    store = open_store(repo / ".ralph" / "ralph.db")
    try:
        assert store.get(task).attempts == 0
    finally:
        store.close()
