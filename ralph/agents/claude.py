"""Claude Code (`claude -p`): prompt on stdin, stream-json events on stdout."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ralph.agents.base import Agent, AgentSignal, Credentials, StreamParser
from ralph.agents.jsonl import JsonLinesParser, count, plus
from ralph.agents.registry import register
from ralph.agents.text import classify_text, parse_reset

CLAUDE_KEY_VARS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
)
# Tools whose input names a file the agent writes; the key holding the path.
WRITE_TOOLS = {
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
}


class ClaudeParser(JsonLinesParser):
    """Reads `--output-format stream-json --verbose` events.

    claude retries a 401/429 itself up to 10 times over minutes, announcing each retry as a
    `system/api_retry` line; the first one is enough to stop (401/403) or pause (429) the loop.
    A written path counts once its tool_result came back without `is_error`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending_writes: dict[str, str] = {}  # tool_use id -> path it writes

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        kind = event.get("type")
        if kind == "system" and event.get("subtype") == "api_retry":
            return [self._api_retry(event)]
        if kind == "system" and event.get("subtype") == "init" and event.get("model"):
            self.report.model = str(event["model"])  # prices cursor's tokens (claude has a cost)
        if kind == "rate_limit_event":
            return [self._rate_limit_event(event)]
        if kind == "assistant":
            self._tool_uses(event.get("message"))
        elif kind == "user":
            self._tool_results(event.get("message"))
        elif kind == "result":
            return [self._result(event)]
        if session := event.get("session_id"):
            self.report.session_id = self.report.session_id or str(session)
        return []

    def _api_retry(self, event: dict[str, Any]) -> AgentSignal | None:
        status, error = event.get("error_status"), str(event.get("error") or "")
        message = f"claude API error {status} {error}".strip()
        if status in (401, 403) or error.startswith("authentication"):
            return AgentSignal("auth_failed", message)
        if status == 429 or error == "rate_limit":
            delay = event.get("retry_delay_ms")
            retry_after = delay / 1000 if isinstance(delay, int | float) else None
            return AgentSignal("rate_limited", message, retry_after=retry_after)
        if status is None and error in ("connection_error", "unknown", "network_error"):
            return self.signal("network_down", f"claude cannot reach the API ({error})")
        return None  # 5xx/overloaded: claude's own retries are the right response

    def _rate_limit_event(self, event: dict[str, Any]) -> AgentSignal | None:
        info = event.get("rate_limit_info") or {}
        if not isinstance(info, dict) or info.get("status") != "rejected":
            return None  # "allowed" / "allowed_warning" are informational
        resets = info.get("resetsAt")
        reset_at = float(resets) if isinstance(resets, int | float) else None
        window = info.get("rateLimitType") or "usage"
        return AgentSignal("rate_limited", f"claude {window} limit reached", reset_at=reset_at)

    def _tool_uses(self, message: object) -> None:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                key = WRITE_TOOLS.get(str(block.get("name")))
                tool_input = block.get("input")
                if key and isinstance(tool_input, dict) and isinstance(tool_input.get(key), str):
                    self.pending_writes[str(block.get("id"))] = tool_input[key]

    def _tool_results(self, message: object) -> None:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                path = self.pending_writes.pop(str(block.get("tool_use_id")), None)
                if path is not None and not block.get("is_error"):
                    self.add_path(path)

    def _result(self, event: dict[str, Any]) -> AgentSignal | None:
        report = self.report
        cost = event.get("total_cost_usd", event.get("cost_usd"))
        if isinstance(cost, int | float):
            report.cost_usd = float(cost)
        usage = event.get("usage")
        if isinstance(usage, dict):
            # Cache reads and writes are input the account pays for; one number keeps caps simple.
            report.input_tokens = plus(
                None,
                *(
                    count(usage.get(k))
                    for k in (
                        "input_tokens",
                        "cache_creation_input_tokens",
                        "cache_read_input_tokens",
                    )
                ),
            )
            report.output_tokens = count(usage.get("output_tokens"))
        if event.get("session_id"):
            report.session_id = str(event["session_id"])
        if isinstance(event.get("num_turns"), int):
            report.num_turns = event["num_turns"]
        report.is_error = bool(event.get("is_error")) or event.get("subtype") not in (
            None,
            "success",
        )
        result = event.get("result")
        report.result_text = result if isinstance(result, str) else None
        if not report.is_error:
            return None
        # An is_error result is claude's own error report ("Not logged in · Please run /login",
        # the API's error message), not the model's prose, and claude exits right after it.
        text = report.result_text or ""
        signal = classify_text(text)
        status = event.get("api_error_status")
        if signal is None and status in (401, 403):
            signal = AgentSignal("auth_failed", text or f"claude API error {status}")
        if signal is None and status == 429:
            retry_after, reset_at = parse_reset(text)
            signal = AgentSignal(
                "rate_limited",
                text or "claude API error 429",
                retry_after=retry_after,
                reset_at=reset_at,
            )
        return signal


@register
class Claude(Agent):
    """`claude -p --output-format stream-json --verbose --dangerously-skip-permissions`."""

    name = "claude"
    executable = "claude"
    prompt_mode = "stdin"
    install_hint = "npm install -g @anthropic-ai/claude-code, then `claude` once to log in"
    auth_fix = "run `claude` once and /login, or set ANTHROPIC_API_KEY"
    cost_source = "reported"
    tested_versions = ("2.1.",)
    setup = ("run `claude` once and /login, or set ANTHROPIC_API_KEY",)
    api_hosts = ("api.anthropic.com",)
    base_url_vars = ("ANTHROPIC_BASE_URL",)
    env_prefixes = ("ANTHROPIC_", "CLAUDE_")
    home_paths = (".claude", ".claude.json")

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        argv = [
            *self.command,
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
        ]
        return self.positional(argv, prompt, prompt_file)

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" not in os.environ:
            # No auto-update, telemetry or error reporting from an unattended loop: workers must
            # not race to update the binary mid-run. What the agent does is unchanged.
            env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root, claude refuses --dangerously-skip-permissions unless IS_SANDBOX is exactly
            # "1" (a container's IS_SANDBOX=yes is refused too), and without the flag nothing can
            # be approved in -p mode. [agents.claude] env can still override it.
            env["IS_SANDBOX"] = "1"
        env.update(self.extra_env)
        return env

    def credentials(self, env: Mapping[str, str], home: Path) -> Credentials:
        for var in CLAUDE_KEY_VARS:
            if env.get(var):
                return True, f"{var} is set"
        if (home / ".claude" / ".credentials.json").is_file():
            return True, "logged in (~/.claude/.credentials.json)"
        try:
            state = json.loads((home / ".claude.json").read_text())
        except (OSError, ValueError):
            state = {}
        if isinstance(state, dict) and state.get("oauthAccount"):
            return True, "logged in (~/.claude.json)"  # macOS keeps the token in the Keychain
        return False, "no ANTHROPIC_API_KEY and no claude login found"

    def new_parser(self) -> StreamParser:
        return self.configure(ClaudeParser())
