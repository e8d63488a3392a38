"""The real `claude` CLI through ralph's adapter and through `ralph run`, against the scripted
model server on loopback (no credentials, no network). Skipped without `claude`, except in CI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from ralph.agents import get_agent
from ralph.agents.base import AgentSignal, StreamParser
from ralph.store import open_store
from tests.support.clis import add_task, check_policy, ralph
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.claude
HANG_GUARD = 120  # seconds; only stops a broken run from hanging the suite


@pytest.fixture(scope="module", autouse=True)
def claude_installed() -> None:
    if shutil.which("claude") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("claude is not on PATH (npm install -g @anthropic-ai/claude-code)")
        pytest.skip("claude is not installed")


def clean_env(home: Path, server: ModelServer) -> dict[str, str]:
    """The caller's environment without its Anthropic/Claude settings, pointed at the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    env.update(HOME=str(home), ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY="test",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")  # fmt: skip
    return env


def git_repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README.md").write_text("scratch\n")
    subprocess.run(["git", "-C", str(path), "add", "README.md"], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@x",
                    "commit", "-qm", "init"], check=True)  # fmt: skip
    return path


def run_adapter(
    repo: Path, home: Path, server: ModelServer, prompt: str, *, stop_on_signal: bool
) -> tuple[StreamParser, list[AgentSignal], int]:
    """Launch claude as the loop does (adapter argv, stdin, env; own process group)."""
    agent = get_agent("claude")
    proc = subprocess.Popen(
        agent.argv(prompt, repo / "prompt.md"),
        cwd=repo,
        env={**clean_env(home, server), **agent.env()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        text=True,
    )
    guard = threading.Timer(HANG_GUARD, os.killpg, (proc.pid, signal.SIGKILL))
    guard.start()
    parser, signals = agent.new_parser(), []
    try:
        proc.stdin.write(agent.stdin(prompt).decode())
        proc.stdin.close()
        for line in proc.stdout:
            signals += parser.feed(line.rstrip("\n"), "stdout")
            if signals and stop_on_signal:
                os.killpg(proc.pid, signal.SIGKILL)
                break
        code = proc.wait()
    finally:
        guard.cancel()
    parser.finish(code)
    return parser, signals, code


def test_claude_writes_the_file_and_reports_cost_and_session(tmp_path):
    repo = git_repo(tmp_path / "repo")
    with ModelServer("write", cwd=repo) as server:
        parser, signals, code = run_adapter(
            repo, tmp_path, server, "WRITE hello.txt: hi there", stop_on_signal=False
        )
    assert (code, signals) == (0, [])
    assert (repo / "hello.txt").read_text() == "hi there"
    report = parser.report
    assert report.cost_usd and report.cost_usd > 0
    assert report.session_id and report.input_tokens and report.output_tokens
    assert not report.is_error
    assert report.changed_paths == [str(repo / "hello.txt")]


@pytest.mark.parametrize(("mode", "kind"), [("401", "auth_failed"), ("429", "rate_limited")])
def test_first_api_retry_is_signalled_before_claude_gives_up(tmp_path, mode, kind):
    repo = git_repo(tmp_path / "repo")
    with ModelServer(mode, cwd=repo) as server:
        _, signals, code = run_adapter(repo, tmp_path, server, "say hi", stop_on_signal=True)
        calls = len(server.message_requests)
    assert [s.kind for s in signals] == [kind]
    assert code == -signal.SIGKILL  # stopped by us, not by claude running out of retries
    assert calls <= 3


# -- the whole loop: `ralph run --agent claude` ---------------------------------------------


@pytest.mark.parametrize("sandbox", ["off", "on"])
def test_ralph_run_with_claude_commits_each_task_with_trailers_and_cost(tmp_path, sandbox):
    """With the sandbox on, claude runs under bwrap with network = "allow": it reaches its
    scripted server (its ANTHROPIC_BASE_URL) through ralph's gate and nothing else."""
    repo = git_repo(tmp_path / "repo")
    with ModelServer("write", cwd=repo) as server:
        env = clean_env(tmp_path, server)
        env["RALPH_SANDBOX"] = sandbox
        first = add_task(repo, env, "Add alpha", "WRITE alpha.txt: alpha")
        second = add_task(repo, env, "Add beta", "WRITE beta.txt: beta")
        out = ralph(repo, env, "run", "--agent", "claude", "--worker", "w1", "--quiet")
    assert out.returncode == 0, out.stderr
    assert (repo / "alpha.txt").read_text() == "alpha" and (repo / "beta.txt").read_text() == "beta"
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%B%x00"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    messages = [m.strip() for m in log.split("\0") if m.strip()][:-1]  # drop "init"
    assert len(messages) == 2
    for task_id, message in zip((second, first), messages, strict=True):
        assert f"Task: {task_id}" in message and "Agent: claude" in message
        assert "Worker: w1" in message and "Cost: " in message
    store = open_store(repo / ".ralph" / "ralph.db")
    try:
        assert {store.get(t).status for t in (first, second)} == {"done"}
        attempts = store.attempts()
        assert len(attempts) == 2 and all(a.cost_usd and a.cost_usd > 0 for a in attempts)
        assert all(a.session_id for a in attempts)
    finally:
        store.close()
    check_policy(repo, env, first, sandbox)


def test_ralph_run_with_claude_stops_on_401_without_counting_an_attempt(tmp_path):
    repo = git_repo(tmp_path / "repo")
    with ModelServer("401", cwd=repo) as server:
        env = clean_env(tmp_path, server)
        tasks = [add_task(repo, env, f"Task {n}", f"WRITE f{n}.txt: {n}") for n in (1, 2)]
        out = ralph(repo, env, "run", "--agent", "claude", "--quiet")
        calls = len(server.message_requests)
    assert out.returncode == 10, out.stderr  # agent auth failed
    assert "authenticat" in out.stderr
    assert calls <= 3  # the first api_retry stopped it; claude alone would try 11 times
    store = open_store(repo / ".ralph" / "ralph.db")
    try:
        for task_id in tasks:
            task = store.get(task_id)
            assert task.status == "open" and task.attempts == 0
        assert all(not a.counted for a in store.attempts())
    finally:
        store.close()
    head = subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "HEAD"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert head.strip() == "1"
