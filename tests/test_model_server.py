"""The scripted model server, alone over HTTP and driving the real claude CLI end to end."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:  # tests/ is on sys.path (rootdir-relative, no tests/__init__.py)
    from support.model_server import ModelServer
except ImportError:  # tests/ is a package
    from tests.support.model_server import ModelServer

CLAUDE_ARGV = [
    "-p",
    "--output-format",
    "stream-json",
    "--verbose",
    "--dangerously-skip-permissions",
    "--model",
    "claude-sonnet-4-5",
]
HANG_GUARD = 120.0  # seconds; only stops a broken run from hanging the suite


@pytest.fixture
def claude() -> str:
    """Path of the claude CLI; skip without it, except under CI=true where it must exist."""
    path = shutil.which("claude")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("claude CLI not on PATH; CI must install @anthropic-ai/claude-code")
        pytest.skip("claude CLI not on PATH (npm install -g @anthropic-ai/claude-code)")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty git repository to run claude in."""
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def _env(srv: ModelServer, home: Path) -> dict[str, str]:
    """Environment pointing claude at ``srv`` with a throwaway HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE_"))}
    home.mkdir(exist_ok=True)
    env.update(
        ANTHROPIC_BASE_URL=srv.url,
        ANTHROPIC_API_KEY="test-key",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        IS_SANDBOX="1",
        HOME=str(home),
    )
    return env


def _spawn(claude: str, srv: ModelServer, repo: Path) -> subprocess.Popen[str]:
    """Start claude in its own process group; the prompt goes to its stdin."""
    return subprocess.Popen(
        [claude, *CLAUDE_ARGV],
        cwd=repo,
        env=_env(srv, repo.parent / "home"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _run(claude: str, srv: ModelServer, repo: Path, prompt: str) -> tuple[int, str, str]:
    """Run claude to completion with ``prompt`` on stdin; return exit code, stdout, stderr."""
    proc = _spawn(claude, srv, repo)
    try:
        out, err = proc.communicate(prompt, timeout=HANG_GUARD)
    finally:
        _kill_group(proc)
    return proc.returncode, out, err


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL claude's whole process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=HANG_GUARD)


def _json_lines(proc: subprocess.Popen[str]) -> Iterator[dict[str, Any]]:
    """Yield claude's stdout JSON lines as they arrive; stop at EOF or after HANG_GUARD."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while (line := lines.get(timeout=HANG_GUARD)) is not None:
        if line.strip():
            yield json.loads(line)


def _first_retry(claude: str, mode: str, repo: Path) -> dict[str, Any]:
    """Run claude against an always-failing server; return its first api_retry line."""
    with ModelServer(mode) as srv:
        proc = _spawn(claude, srv, repo)
        try:
            assert proc.stdin is not None
            proc.stdin.write("say hi\n")
            proc.stdin.close()
            for event in _json_lines(proc):
                if event.get("subtype") == "api_retry":
                    return event
            pytest.fail(f"claude exited {proc.wait()} without an api_retry line")
        finally:
            _kill_group(proc)


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    """POST JSON; return status, lower-cased headers and body text (errors included)."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"x-api-key": "k"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, headers, text = resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        status, headers, text = err.code, dict(err.headers), err.read().decode()
    return status, {k.lower(): v for k, v in headers.items()}, text


def test_text_mode_streams_a_message_with_usage() -> None:
    with ModelServer("text", reply="hello") as srv:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        status, headers, text = _post(srv.url + "/v1/messages?beta=true", body)
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = [json.loads(x[6:]) for x in text.splitlines() if x.startswith("data: ")]
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["usage"]["input_tokens"] > 0
    assert events[2]["delta"] == {"type": "text_delta", "text": "hello"}
    assert events[4]["delta"]["stop_reason"] == "end_turn"
    assert srv.requests[0]["json"] == body
    assert "x-api-key" not in srv.requests[0]["headers"]


def test_write_mode_answers_with_a_write_tool_use_then_text(tmp_path: Path) -> None:
    tools = [{"name": "Write"}]
    first = {"role": "user", "content": [{"type": "text", "text": "go\nWRITE a/b.txt: x\\ny"}]}
    with ModelServer("write", cwd=tmp_path) as srv:
        blocks = srv.answer({"tools": tools, "messages": [first]})
        result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
        follow = srv.answer({"tools": tools, "messages": [first, {"role": "assistant"}, result]})
    assert blocks[0]["name"] == "Write"
    assert blocks[0]["input"] == {"file_path": str(tmp_path / "a/b.txt"), "content": "x\ny"}
    assert follow == [{"type": "text", "text": "done"}]


@pytest.mark.parametrize(
    ("mode", "kind"), [("401", "authentication_error"), ("429", "rate_limit_error")]
)
def test_error_modes_answer_with_anthropic_error_json(mode: str, kind: str) -> None:
    with ModelServer(mode) as srv:
        status, headers, text = _post(srv.url + "/v1/messages", {"messages": []})
    body = json.loads(text)
    assert status == int(mode)
    assert body["type"] == "error" and body["error"]["type"] == kind and body["error"]["message"]
    assert ("retry-after" in headers) == (mode == "429")


@pytest.mark.claude
def test_claude_writes_the_file_and_reports_cost(claude: str, repo: Path) -> None:
    prompt = "Create the file.\nWRITE notes/hello.txt: hello from the model\n"
    with ModelServer("write") as srv:
        code, out, err = _run(claude, srv, repo, prompt)
        calls = srv.message_requests
    assert code == 0, err
    assert (repo / "notes" / "hello.txt").read_text() == "hello from the model"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["type"] == "result" and result["is_error"] is False
    assert result["total_cost_usd"] > 0
    assert result["num_turns"] == 2 and result["session_id"]
    assert result["usage"]["input_tokens"] > 0
    assert len(calls) == 2


@pytest.mark.claude
@pytest.mark.parametrize(
    ("mode", "error"), [("401", "authentication_failed"), ("429", "rate_limit")]
)
def test_claude_reports_an_api_retry(claude: str, repo: Path, mode: str, error: str) -> None:
    event = _first_retry(claude, mode, repo)
    assert event["type"] == "system"
    assert event["error_status"] == int(mode)
    assert event["error"] == error
    assert event["attempt"] == 1 and event["max_retries"] == 10


@pytest.mark.claude
@pytest.mark.parametrize("mode", ["401", "429"])
def test_claude_gives_up_at_once_when_told_not_to_retry(claude: str, repo: Path, mode: str) -> None:
    with ModelServer(mode, should_retry=False) as srv:
        code, out, _ = _run(claude, srv, repo, "say hi\n")
    assert code == 1
    result = json.loads(out.strip().splitlines()[-1])
    assert result["type"] == "result" and result["is_error"] is True
    assert result["api_error_status"] == int(mode)
    assert result["total_cost_usd"] == 0
