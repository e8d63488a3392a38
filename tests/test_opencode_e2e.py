"""The real `opencode` CLI through `ralph run`, against the scripted Anthropic server on loopback
(no credentials, no network). Skipped without `opencode`, except in CI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ralph.store import open_store
from tests.support.clis import (
    add_task,
    check_each_task_done_once,
    clean_env,
    git_repo,
    ralph,
    require,
)
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.opencode
MODEL = "anthropic/claude-sonnet-4-5"
# 2 calls a task (the write tool call, then the answer) of 1200 in / 60 out tokens each, priced
# by opencode itself
TASK_COST = 2 * 0.0045


@pytest.fixture(scope="module", autouse=True)
def opencode_installed() -> None:
    require("opencode")


def config(tmp_path: Path, url: str) -> Path:
    """A ralph.toml outside the repo: opencode's anthropic provider at the scripted server."""
    provider = {"provider": {"anthropic": {"options": {"baseURL": f"{url}/v1", "apiKey": "k"}}}}
    path = tmp_path / "ralph.toml"
    path.write_text(
        f'agent = "opencode"\n[agents.opencode]\nmodel = "{MODEL}"\n'
        f"[agents.opencode.env]\nOPENCODE_CONFIG_CONTENT = {json.dumps(json.dumps(provider))}\n"
    )
    return path


def test_two_opencodes_write_into_their_own_workspaces_and_share_one_home(tmp_path):
    # The user starts ralph from the repository, so $PWD names the main checkout; opencode
    # resolves paths against $PWD, and both share one HOME (one opencode data folder).
    repo = git_repo(tmp_path / "repo")
    with ModelServer("write") as server:
        env = clean_env(tmp_path / "home", PWD=str(repo))
        tasks = [add_task(repo, env, f"Add f{n}", f"WRITE f{n}.txt: file {n}") for n in range(3)]
        out = ralph(repo, env, "run", "--config", str(config(tmp_path, server.url)),
                    "--workers", "2", "--quiet")  # fmt: skip
    assert out.returncode == 0, out.stderr
    check_each_task_done_once(repo, tasks, (2400, 120), TASK_COST)
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert [a.outcome for a in store.attempts()] == ["success"] * len(tasks)
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert status == ""  # nothing left untracked in the main checkout
