"""A scripted, stdlib-only stand-in for the Anthropic Messages API, for driving the real claude CLI.

Point claude at it with ``ANTHROPIC_BASE_URL=srv.url`` and ``ANTHROPIC_API_KEY=test-key``.
Modes: ``"text"`` answers every turn with ``reply``. ``"write"`` answers the first tool-bearing turn
with a ``Write`` tool_use taken from a prompt line ``WRITE <path>: <content>`` (a relative path is
resolved against ``cwd``, else against the "Primary working directory:" in claude's system prompt;
``\\n`` in the content becomes a newline) and the tool_result follow-up with ``reply``. ``"401"``
and ``"429"`` answer every POST with an Anthropic-shaped error; claude retries those 10 times
(about 3 minutes) unless ``should_retry=False`` sends ``x-should-retry: false``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODES = ("text", "write", "401", "429")
WRITE_RE = re.compile(r"^\s*WRITE\s+(?P<path>[^:\n]+?)\s*:[ \t]?(?P<content>.*)$", re.MULTILINE)
CWD_RE = re.compile(r"Primary working directory:\s*(?P<cwd>/\S+)")
INPUT_TOKENS = 1200  # with OUTPUT_TOKENS, claude-sonnet-4-5 prices one turn at $0.0045
OUTPUT_TOKENS = 60
ERRORS = {
    401: ("authentication_error", "invalid x-api-key"),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
}


def _text_of(content: Any) -> str:
    """Flatten a message or system ``content`` (string or block list) to plain text."""
    if isinstance(content, str):
        return content
    blocks = content if isinstance(content, list) else []
    return "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict))


def _has_tool_result(message: dict[str, Any]) -> bool:
    """True if a message carries a tool_result block."""
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


class ModelServer:
    """Loopback HTTP server that plays a fixed script; use as a context manager."""

    def __init__(
        self,
        mode: str = "text",
        *,
        cwd: str | Path | None = None,
        reply: str = "done",
        retry_after: int = 1,
        should_retry: bool = True,
        unified_reset: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.mode = mode
        self.cwd = Path(cwd) if cwd is not None else None
        self.reply = reply
        self.retry_after = retry_after
        self.should_retry = should_retry
        self.unified_reset = unified_reset
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL for ``ANTHROPIC_BASE_URL``."""
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def message_requests(self) -> list[dict[str, Any]]:
        """Received ``POST /v1/messages`` requests (count_tokens and HEAD excluded)."""
        key = ("POST", "/v1/messages")
        with self._lock:
            return [r for r in self.requests if (r["method"], r["route"]) == key]

    def start(self) -> ModelServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, entry: dict[str, Any]) -> None:
        """Append one request record (thread-safe)."""
        with self._lock:
            self.requests.append(entry)

    def error_headers(self, status: int) -> dict[str, str]:
        """Extra headers for an error reply: retry-after, x-should-retry, unified limit headers."""
        headers = {} if self.should_retry else {"x-should-retry": "false"}
        if status == 429:
            headers["retry-after"] = str(self.retry_after)
            if self.unified_reset is not None:  # claude only acts on these for OAuth logins
                headers["anthropic-ratelimit-unified-status"] = "rejected"
                headers["anthropic-ratelimit-unified-reset"] = str(self.unified_reset)
                headers["anthropic-ratelimit-unified-representative-claim"] = "five_hour"
        return headers

    def answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Content blocks answering one messages request, per the script."""
        messages = body.get("messages") or []
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        follow_up = not messages or _has_tool_result(messages[-1])
        if self.mode != "write" or "Write" not in tools or follow_up:
            return [{"type": "text", "text": self.reply}]
        prompt = "\n".join(_text_of(m.get("content")) for m in messages if m.get("role") == "user")
        match = WRITE_RE.search(prompt)
        if match is None:
            return [{"type": "text", "text": "no WRITE line found in the prompt"}]
        path = Path(match["path"].strip())
        if not path.is_absolute():
            path = self._base_dir(body) / path
        tool_input = {"file_path": str(path), "content": match["content"].replace("\\n", "\n")}
        tool_id = "toolu_" + uuid.uuid4().hex[:24]
        return [{"type": "tool_use", "id": tool_id, "name": "Write", "input": tool_input}]

    def _base_dir(self, body: dict[str, Any]) -> Path:
        """Directory for relative WRITE paths: ``cwd``, else the one claude reports."""
        if self.cwd is not None:
            return self.cwd
        texts = [_text_of(body.get("system"))]
        texts += [_text_of(m.get("content")) for m in body.get("messages") or []]
        for text in texts:
            if found := CWD_RE.search(text):
                return Path(found["cwd"])
        raise ValueError("relative WRITE path, but no cwd given and none found in the request")


def _message(body: dict[str, Any], blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The complete (non-streamed) assistant message for ``blocks``."""
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    usage = {
        "input_tokens": INPUT_TOKENS,
        "output_tokens": OUTPUT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def sse_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The Anthropic SSE event sequence that streams ``message``."""
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**message["usage"], "output_tokens": 1},
    }
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"message": start})]
    for i, block in enumerate(message["content"]):
        if block["type"] == "text":
            first = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            first = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events += [
            ("content_block_start", {"index": i, "content_block": first}),
            ("content_block_delta", {"index": i, "delta": delta}),
            ("content_block_stop", {"index": i}),
        ]
    final = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events += [
        ("message_delta", {"delta": final, "usage": {"output_tokens": OUTPUT_TOKENS}}),
        ("message_stop", {}),
    ]
    return [(name, {"type": name, **data}) for name, data in events]


def _make_handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    """Build a request handler class bound to ``server``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

        def _record(self) -> dict[str, Any]:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            hidden = ("x-api-key", "authorization")
            headers = {k.lower(): v for k, v in self.headers.items() if k.lower() not in hidden}
            entry = {
                "method": self.command,
                "path": self.path,
                "route": self.path.split("?")[0],
                "headers": headers,
                "json": body,
            }
            server.record(entry)
            return entry

        def _send(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", "req_" + uuid.uuid4().hex[:24])
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_HEAD(self) -> None:  # claude sends HEAD / as a connectivity probe
            self._record()
            self._send(200, {})

        do_GET = do_HEAD

        def do_POST(self) -> None:
            entry = self._record()
            body = entry["json"] if isinstance(entry["json"], dict) else {}
            if server.mode in ("401", "429"):
                status = int(server.mode)
                kind, text = ERRORS[status]
                error = {"type": "error", "error": {"type": kind, "message": text}}
                self._send(status, error, server.error_headers(status))
            elif entry["route"] == "/v1/messages/count_tokens":
                self._send(200, {"input_tokens": INPUT_TOKENS})
            elif entry["route"] == "/v1/messages":
                self._messages(body)
            else:
                error = {"type": "not_found_error", "message": f"no route {self.path}"}
                self._send(404, {"type": "error", "error": error})

        def _messages(self, body: dict[str, Any]) -> None:
            message = _message(body, server.answer(body))
            if not body.get("stream"):
                self._send(200, message)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            for name, data in sse_events(message):
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
            self.close_connection = True

    return Handler
