"""qwen-code (`qwen --output-format stream-json`): prompt on stdin, Claude-style stream JSON.

Recorded with qwen-code 0.15.10 against tests/support/model_server.py: a failed API call is not
an error event; qwen prints it as the assistant's text and the result's `result`, always in the
fixed form `[API Error: <status> <body>]` or `[API Error: Connection error. (cause: ...)]`,
with `subtype: success` and exit code 0. No auth type configured is an `error_during_execution`
result whose `error.message` says so (exit 1). qwen reports tokens, never a cost.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ralph.agents.base import Agent, AgentSignal, Credentials, StreamParser
from ralph.agents.claude import ClaudeParser
from ralph.agents.registry import register
from ralph.agents.text import classify_text, parse_reset

# the first line of the result; qwen may add a hint line after it ("Possible quota limitations")
API_ERROR_RE = re.compile(r"^\[API Error: (?:(?P<status>\d{3})\b)?(?P<rest>.*)\]$")
NO_AUTH = "No auth type is selected"
KEY_VARS = ("OPENAI_API_KEY", "DASHSCOPE_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")


class QwenParser(ClaudeParser):
    """claude's stream JSON, plus qwen's `[API Error: ...]` results and its missing auth type."""

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        signals = super().event(event)
        if event.get("type") == "assistant":
            self._write_calls(event.get("message"))
        if event.get("type") == "result":
            signals.append(self._qwen_result(event))
        return signals

    def _write_calls(self, message: object) -> None:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("name") in ("write_file", "edit"):
                tool_input = block.get("input")
                path = tool_input.get("file_path") if isinstance(tool_input, dict) else None
                if isinstance(path, str):
                    self.pending_writes[str(block.get("id"))] = path

    def _qwen_result(self, event: dict[str, Any]) -> AgentSignal | None:
        report = self.report
        error = event.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            report.is_error, report.result_text = True, error["message"]
            if error["message"].startswith(NO_AUTH):
                return self.signal("auth_failed", f"qwen: {error['message']}")
            return classify_text(error["message"])
        found = API_ERROR_RE.match((report.result_text or "").strip().split("\n", 1)[0])
        if found is None:
            return None
        report.is_error = True
        status, rest = found["status"], found["rest"].strip()
        message = f"qwen API error {status or ''} {_error_message(rest)}".replace("  ", " ")
        if status in ("401", "403"):
            return self.signal("auth_failed", message)
        if status == "429":
            retry_after, reset_at = parse_reset(rest)
            return AgentSignal("rate_limited", message, retry_after=retry_after, reset_at=reset_at)
        signal = classify_text(rest)
        if signal is not None and signal.kind == "network_down":
            return self.signal("network_down", message)
        return signal


def _error_message(body: str) -> str:
    """The `message` of a JSON error body, else the body itself (clipped)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200]
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return body[:200]


@register
class Qwen(Agent):
    """`qwen --output-format stream-json --approval-mode yolo`, the prompt on stdin.

    Its provider comes from ~/.qwen/settings.json or `args` (e.g. `--auth-type openai` with
    OPENAI_API_KEY / OPENAI_BASE_URL / OPENAI_MODEL in `env`).
    """

    name = "qwen"
    executable = "qwen"
    prompt_mode = "stdin"
    install_hint = "npm install -g @qwen-code/qwen-code, then `qwen auth` or set OPENAI_API_KEY"
    auth_fix = "run `qwen auth`, or pass --auth-type in [agents.qwen] args with that provider's key"
    cost_source = "estimated"
    tested_versions = ("0.15.",)
    setup = ('run `qwen auth` once, or set args = ["--auth-type", "openai"] and OPENAI_API_KEY',)
    api_hosts = ("chat.qwen.ai", "dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com")
    base_url_vars = ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")
    env_prefixes = ("QWEN_", "OPENAI_", "ANTHROPIC_", "DASHSCOPE_")
    home_paths = (".qwen",)

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        argv = [*self.command, "--output-format", "stream-json", "--approval-mode", "yolo"]
        return self.positional(argv, prompt, prompt_file)

    def attempt_env(self, run_dir: Path) -> dict[str, str]:
        # qwen retries a 429 up to 10 times, a minute or more apart, printing nothing: the loop
        # would only learn of the limit after most of an hour. With no retries of its own the
        # limit ends the run at once and the loop pauses every worker instead. A system-defaults
        # file ranks below the user's own settings, so a maxRetries the user chose still wins.
        if (
            "QWEN_CODE_SYSTEM_DEFAULTS_PATH" in self.extra_env
            or "QWEN_CODE_SYSTEM_DEFAULTS_PATH" in os.environ
        ):
            return {}
        path = run_dir / "qwen-defaults.json"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"model": {"generationConfig": {"maxRetries": 0}}}))
        except OSError:
            return {}
        return {"QWEN_CODE_SYSTEM_DEFAULTS_PATH": str(path)}

    def credentials(self, env: Mapping[str, str], home: Path) -> Credentials:
        keys = [var for var in KEY_VARS if env.get(var)]
        settings = home / ".qwen" / "settings.json"
        if (home / ".qwen" / "oauth_creds.json").is_file():
            return True, "logged in (~/.qwen/oauth_creds.json)"
        if "--auth-type" in self.args or settings.is_file():
            if keys:
                return True, ", ".join(keys) + " set"
            return None, "an auth type is chosen; its key may be in settings.json"
        return False, "no auth type: neither ~/.qwen/settings.json nor --auth-type in args"

    def new_parser(self) -> StreamParser:
        return self.configure(QwenParser())
