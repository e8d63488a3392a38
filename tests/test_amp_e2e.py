"""The real `amp` CLI, offline: its server on a closed loopback port (no credentials, no network).
Skipped without `amp`, except under CI=true: .ci/run installs it from npm."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ralph.agents import get_agent
from ralph.process import AgentProcess
from tests.support.clis import clean_env, git_repo, require

pytestmark = pytest.mark.amp


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_amp_that_cannot_reach_its_server_is_network_down_not_a_failed_attempt(tmp_path: Path):
    require("amp")
    repo = git_repo(tmp_path / "repo")
    env = clean_env(tmp_path / "home", AMP_API_KEY="test-key",
                    AMP_URL=f"http://127.0.0.1:{closed_port()}")  # fmt: skip
    agent = get_agent("amp")
    (tmp_path / "run").mkdir()
    proc = AgentProcess(agent.argv("say hi", tmp_path / "run" / "prompt.md"), cwd=repo,
                        out_dir=tmp_path / "run", env=env, stdin=agent.stdin("say hi"),
                        parser=agent.new_parser(), timeout=120)  # fmt: skip
    result = proc.run()
    assert result.exit_code != 0
    signal = proc.parser.final_signal(result.exit_code)
    assert signal is not None and signal.kind == "network_down", result.stderr_tail
