"""Scripted, stdlib-only stand-ins for the model APIs the real agent CLIs call, on loopback.

``ModelServer`` speaks the Anthropic Messages API (claude), ``ResponsesServer`` the OpenAI Responses
API (codex) and ``GeminiServer`` the Gemini API (gemini); all share the modes below.

Point claude at it with ``ANTHROPIC_BASE_URL=srv.url`` and ``ANTHROPIC_API_KEY=test-key``.
Modes: ``"text"`` answers every turn with ``reply``. ``"write"`` answers the first tool-bearing turn
with a ``Write`` tool_use taken from a prompt line ``WRITE <path>: <content>`` (a relative path is
resolved against ``cwd``, else against the "Primary working directory:" in claude's system prompt;
``\\n`` in the content becomes a newline) and the tool_result follow-up with ``reply``. opencode
(its anthropic provider's ``baseURL`` at ``<url>/v1``) gets a ``write`` tool_use with the path as
written, which it resolves itself; qwen-code (``--auth-type anthropic``, ``ANTHROPIC_BASE_URL``) a
``write_file`` tool_use, resolved like claude's against the directory its system prompt names.
``"400"``, ``"401"`` and ``"429"`` answer every POST with the API's error; claude retries 401 and
429 10 times (about 3 minutes) unless ``should_retry=False`` sends ``x-should-retry: false``.

codex: ``-c model_provider=mock -c model_providers.mock.base_url="<url>/v1"
-c model_providers.mock.env_key=<VAR> -c model_providers.mock.wire_api="responses"`` and a model
name codex does not know (it then offers the ``exec_command`` tool, which "write" mode calls).
gemini: ``GOOGLE_GEMINI_BASE_URL=<url>``, ``GEMINI_API_KEY`` and
``{"security":{"auth":{"selectedType":"gemini-api-key"}}}`` in ``$HOME/.gemini/settings.json``;
its routing ``generateContent`` call gets an answer filled from the schema it asks for.
copilot: ``COPILOT_PROVIDER_BASE_URL=<url>/v1``, ``COPILOT_PROVIDER_WIRE_API=responses``,
``COPILOT_PROVIDER_API_KEY``, ``COPILOT_MODEL`` and ``COPILOT_OFFLINE=true``; "write" mode calls its
``create`` tool.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODES = ("text", "write", "400", "401", "429")
WRITE_RE = re.compile(r"^\s*WRITE\s+(?P<path>[^:\n]+?)\s*:[ \t]?(?P<content>.*)$", re.MULTILINE)
# claude's system prompt, and qwen-code's
CWD_RE = re.compile(
    r"(?:Primary working directory:|I'm currently working in the directory:)\s*(?P<cwd>/\S+)"
)
INPUT_TOKENS = 1200  # with OUTPUT_TOKENS, claude-sonnet-4-5 prices one turn at $0.0045
OUTPUT_TOKENS = 60
ERRORS = {
    400: ("invalid_request_error", "messages: the request is malformed"),
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

    def error_body(self, status: int) -> dict[str, Any]:
        """The API's error object for ``status``."""
        kind, text = ERRORS[status]
        return {"type": "error", "error": {"type": kind, "message": text}}

    def handle(self, handler: Any, route: str, body: dict[str, Any]) -> None:
        """Answer one successful POST (the handler sends the reply)."""
        handler.anthropic(route, body)

    def write_line(self, prompt: str, cwd: Path | None) -> tuple[Path, str] | None:
        """(absolute path, content) of the prompt's ``WRITE`` line (relative to ``cwd``)."""
        match = WRITE_RE.search(prompt)
        if match is None:
            return None
        path = Path(match["path"].strip())
        if not path.is_absolute():
            if cwd is None:
                raise ValueError("relative WRITE path and no cwd given")
            path = cwd / path
        return path, match["content"].replace("\\n", "\n")

    def answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Content blocks answering one messages request, per the script."""
        messages = body.get("messages") or []
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        follow_up = not messages or _has_tool_result(messages[-1])
        if self.mode != "write" or not tools & {"Write", "write", "write_file"} or follow_up:
            return [{"type": "text", "text": self.reply}]
        prompt = "\n".join(_text_of(m.get("content")) for m in messages if m.get("role") == "user")
        match = WRITE_RE.search(prompt)
        if match is None:
            return [{"type": "text", "text": "no WRITE line found in the prompt"}]
        path = Path(match["path"].strip())
        content = match["content"].replace("\\n", "\n")
        tool_id = "toolu_" + uuid.uuid4().hex[:24]
        if "write_file" in tools:  # qwen-code's tool: an absolute path, as claude's
            path = path if path.is_absolute() else self._base_dir(body) / path
            tool_input = {"file_path": str(path), "content": content}
            return [{"type": "tool_use", "id": tool_id, "name": "write_file", "input": tool_input}]
        if "Write" not in tools:  # opencode's `write` tool: the path as given, it resolves it
            tool_input = {"filePath": str(path), "content": content}
            return [{"type": "tool_use", "id": tool_id, "name": "write", "input": tool_input}]
        if not path.is_absolute():
            path = self._base_dir(body) / path
        tool_input = {"file_path": str(path), "content": content}
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
            if server.mode in ("400", "401", "429"):
                status = int(server.mode)
                self._send(status, server.error_body(status), server.error_headers(status))
            else:
                server.handle(self, entry["route"], body)

        send_json = _send

        def sse(self, events: list[tuple[str | None, dict[str, Any]]]) -> None:
            """Stream ``events`` as server-sent events and close the connection."""
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            for name, data in events:
                head = f"event: {name}\n" if name else ""
                self.wfile.write(f"{head}data: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
            self.close_connection = True

        def anthropic(self, route: str, body: dict[str, Any]) -> None:
            """The Anthropic Messages API routes."""
            if route == "/v1/messages/count_tokens":
                self._send(200, {"input_tokens": INPUT_TOKENS})
            elif route == "/v1/messages":
                self._messages(body)
            else:
                error = {"type": "not_found_error", "message": f"no route {self.path}"}
                self._send(404, {"type": "error", "error": error})

        def _messages(self, body: dict[str, Any]) -> None:
            message = _message(body, server.answer(body))
            if not body.get("stream"):
                self._send(200, message)
                return
            self.sse(list(sse_events(message)))

    return Handler


# -- OpenAI Responses API (codex) -------------------------------------------------------------

OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "messages: the request is malformed"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: test."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again "
          "in 20s."),
}  # fmt: skip
CODEX_CWD_RE = re.compile(r"<cwd>(?P<cwd>[^<]+)</cwd>")
COPILOT_CWD_RE = re.compile(r"Current working directory:\s*(?P<cwd>/\S+)")


class ResponsesServer(ModelServer):
    """The OpenAI Responses API (``POST /v1/responses``, streamed) as codex calls it."""

    @property
    def response_requests(self) -> list[dict[str, Any]]:
        """Received ``POST /v1/responses`` requests."""
        with self._lock:
            return [r for r in self.requests if r["route"] == "/v1/responses"]

    def error_body(self, status: int) -> dict[str, Any]:
        kind, code, text = OPENAI_ERRORS[status]
        return {"error": {"message": text, "type": kind, "code": code, "param": None}}

    def handle(self, handler: Any, route: str, body: dict[str, Any]) -> None:
        if route != "/v1/responses":
            handler.send_json(404, {"error": {"message": f"no route {route}"}})
            return
        items = self.output(body)
        response = {
            "id": "resp_" + uuid.uuid4().hex[:24],
            "object": "response",
            "status": "completed",
            "model": body.get("model"),
            "output": items,
            "usage": {
                "input_tokens": INPUT_TOKENS,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": OUTPUT_TOKENS,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
            },
        }
        started = {**response, "status": "in_progress", "output": []}
        events: list[tuple[str | None, dict[str, Any]]] = [
            ("response.created", {"type": "response.created", "response": started})
        ]
        for i, item in enumerate(items):
            done = {"type": "response.output_item.done", "output_index": i, "item": item}
            events.append(("response.output_item.done", done))
        events.append(("response.completed", {"type": "response.completed", "response": response}))
        handler.sse(events)

    def output(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Output items: an ``exec_command`` call (codex) or a ``create`` call (copilot) writing
        the WRITE line's file, else a message."""
        inputs = [i for i in body.get("input") or [] if isinstance(i, dict)]
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        follow_up = bool(inputs) and inputs[-1].get("type") == "function_call_output"
        texts = [_text_of(i.get("content")) for i in inputs if i.get("role") == "user"]
        write = None
        if self.mode == "write" and "create" in tools and not follow_up:  # copilot
            system = _text_of(body.get("instructions")) + "\n".join(
                _text_of(i.get("content")) for i in inputs if i.get("role") != "user"
            )
            found = COPILOT_CWD_RE.search(system)
            cwd = Path(found["cwd"]) if found and self.cwd is None else self.cwd
            write = self.write_line("\n".join(texts), cwd)
            if write is not None:
                args = {"path": str(write[0]), "file_text": write[1]}
                return [{"type": "function_call", "id": "fc_" + uuid.uuid4().hex[:24],
                         "call_id": "call_" + uuid.uuid4().hex[:24], "name": "create",
                         "arguments": json.dumps(args), "status": "completed"}]  # fmt: skip
        if self.mode == "write" and "exec_command" in tools and not follow_up:
            found = CODEX_CWD_RE.search("\n".join(texts))
            cwd = Path(found["cwd"].strip()) if found and self.cwd is None else self.cwd
            write = self.write_line("\n".join(texts), cwd)
        if write is None:
            content = [{"type": "output_text", "text": self.reply, "annotations": []}]
            return [{"type": "message", "id": "msg_" + uuid.uuid4().hex[:24], "role": "assistant",
                     "status": "completed", "content": content}]  # fmt: skip
        path, text = write
        cmd = f"printf '%s' {shlex.quote(text)} > {shlex.quote(str(path))}"
        return [{"type": "function_call", "id": "fc_" + uuid.uuid4().hex[:24],
                 "call_id": "call_" + uuid.uuid4().hex[:24], "name": "exec_command",
                 "arguments": json.dumps({"cmd": cmd}), "status": "completed"}]  # fmt: skip


# -- Gemini API (gemini) ----------------------------------------------------------------------

GEMINI_ERRORS = {
    400: ("invalid_request_error", "messages: the request is malformed"),
    401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
}
GEMINI_CWD_RE = re.compile(r"Workspace Directories:\**\s*\n\s*-\s*(?P<cwd>/\S+)")
GEMINI_ROUTE_RE = re.compile(r"^/v1beta/models/(?P<model>[^:/]+):(?P<method>\w+)$")


class GeminiServer(ModelServer):
    """The Gemini API (generateContent, streamGenerateContent?alt=sse) as gemini calls it."""

    @property
    def stream_requests(self) -> list[dict[str, Any]]:
        """Received ``streamGenerateContent`` requests (the routing calls excluded)."""
        with self._lock:
            return [r for r in self.requests if r["route"].endswith(":streamGenerateContent")]

    def error_body(self, status: int) -> dict[str, Any]:
        kind, text = GEMINI_ERRORS[status]
        error: dict[str, Any] = {"code": status, "message": text, "status": kind}
        if status == 429:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                 "retryDelay": f"{self.retry_after}s"}]  # fmt: skip
        return {"error": error}

    def handle(self, handler: Any, route: str, body: dict[str, Any]) -> None:
        match = GEMINI_ROUTE_RE.match(route)
        if match is None or match["method"] not in ("generateContent", "streamGenerateContent"):
            handler.send_json(404, {"error": {"code": 404, "message": f"no route {route}"}})
            return
        config = body.get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        if isinstance(schema, dict):  # the router's classification call
            parts = [{"text": json.dumps(_fill(schema))}]
        else:
            parts = self.parts(body)
        reply = {
            "candidates": [{"content": {"role": "model", "parts": parts},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": INPUT_TOKENS,
                              "candidatesTokenCount": OUTPUT_TOKENS,
                              "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS},
            "modelVersion": match["model"],
        }  # fmt: skip
        if match["method"] == "streamGenerateContent":
            handler.sse([(None, chunk) for chunk in _chunks(reply)])
        else:
            handler.send_json(200, reply)

    def parts(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """A ``write_file`` call for the WRITE line on the first turn, else the reply text."""
        contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
        last = contents[-1].get("parts") if contents else None
        follow_up = isinstance(last, list) and any(
            isinstance(p, dict) and "functionResponse" in p for p in last
        )
        names = {
            d.get("name")
            for t in body.get("tools") or []
            for d in (t.get("functionDeclarations") or [] if isinstance(t, dict) else [])
        }
        if self.mode == "write" and "write_file" in names and not follow_up:
            texts = [
                str(p.get("text", ""))
                for c in contents
                if c.get("role") == "user"
                for p in c.get("parts") or []
                if isinstance(p, dict)
            ]
            found = GEMINI_CWD_RE.search("\n".join(texts))
            cwd = Path(found["cwd"]) if found and self.cwd is None else self.cwd
            if write := self.write_line("\n".join(texts), cwd):
                args = {"file_path": str(write[0]), "content": write[1]}
                return [{"functionCall": {"name": "write_file", "args": args}}]
        return [{"text": self.reply}]


def _fill(schema: dict[str, Any]) -> Any:
    """A value matching a (Gemini-style, upper-case types) JSON schema."""
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: _fill(v) for k, v in props.items() if isinstance(v, dict)}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 10
    if kind == "boolean":
        return False
    enum = schema.get("enum")
    return enum[0] if isinstance(enum, list) and enum else "simple"


def _chunks(reply: dict[str, Any], size: int = 16384) -> list[dict[str, Any]]:
    """A long text reply streamed in pieces, as the API streams it (usage on the last one)."""
    parts = reply["candidates"][0]["content"]["parts"]
    text = parts[0].get("text") if len(parts) == 1 else None
    if not isinstance(text, str) or len(text) <= size:
        return [reply]
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    out = []
    for n, piece in enumerate(pieces):
        candidate = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
        if n == len(pieces) - 1:
            candidate["finishReason"] = "STOP"
        chunk: dict[str, Any] = {"candidates": [candidate], "modelVersion": reply["modelVersion"]}
        if n == len(pieces) - 1:
            chunk["usageMetadata"] = reply["usageMetadata"]
        out.append(chunk)
    return out
