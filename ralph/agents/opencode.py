"""opencode (`opencode run --format json`): prompt as the message after `--`, JSON events."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ralph.agents.base import Agent, AgentSignal, StreamParser
from ralph.agents.jsonl import JsonLinesParser, as_int
from ralph.agents.registry import register
from ralph.agents.text import classify_text, parse_reset

WRITE_TOOLS = ("write", "edit", "patch", "multiedit")


class OpencodeParser(JsonLinesParser):
    """Reads `--format json` events: step_start, text, tool_use, step_finish (tokens, cost), error.

    opencode retries a 429 itself and reports only the final `error` event.
    """

    reported_zero = False

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        kind = event.get("type")
        part = event.get("part") if isinstance(event.get("part"), dict) else {}
        if event.get("sessionID"):
            self.report.session_id = str(event["sessionID"])
        if kind == "text" and isinstance(part.get("text"), str):
            self.report.result_text = part["text"]
        elif kind == "tool_use" and part.get("tool") in WRITE_TOOLS:
            state = part.get("state")
            tool_input = state.get("input") if isinstance(state, dict) else None
            if isinstance(tool_input, dict):
                self.add_path(tool_input.get("filePath") or tool_input.get("file_path"))
        elif kind == "step_finish":
            self._step(part)
        elif kind == "error":
            return [self._error(event.get("error"))]
        return []

    def _step(self, part: dict[str, Any]) -> None:
        report = self.report
        report.num_turns = (report.num_turns or 0) + 1
        # A provider opencode has no price for reports cost 0: leave it to the estimate then.
        if isinstance(part.get("cost"), int | float):
            self.reported_zero = self.reported_zero or part["cost"] == 0
            if part["cost"] > 0:
                report.cost_usd = (report.cost_usd or 0.0) + float(part["cost"])
        tokens = part.get("tokens")
        if isinstance(tokens, dict):
            cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
            report.input_tokens = (
                (report.input_tokens or 0)
                + as_int(tokens.get("input"))
                + sum(as_int(cache.get(k)) for k in ("read", "write"))
            )
            report.output_tokens = (report.output_tokens or 0) + as_int(tokens.get("output"))

    def estimate_cost(self) -> None:
        super().estimate_cost()
        if self.report.cost_usd is None and self.reported_zero:
            self.report.cost_usd = 0.0  # a free model, or one whose price neither side knows

    def _error(self, error: object) -> AgentSignal | None:
        self.report.is_error = True
        data = error.get("data") if isinstance(error, dict) else None
        data = data if isinstance(data, dict) else {}
        message = str(
            data.get("message") or (error.get("name") if isinstance(error, dict) else "") or error
        )
        self.report.result_text = message
        if isinstance(error, dict) and error.get("name") == "ProviderAuthError":
            return AgentSignal("auth_failed", f"opencode: {message}")
        status = data.get("statusCode")
        if status in (401, 403):
            return AgentSignal("auth_failed", f"opencode API error {status}: {message}")
        if status == 429:
            headers = data.get("responseHeaders")
            retry = headers.get("retry-after") if isinstance(headers, dict) else None
            retry_after, reset_at = parse_reset(f"retry-after: {retry}" if retry else message)
            return AgentSignal(
                "rate_limited",
                f"opencode API error 429: {message}",
                retry_after=retry_after,
                reset_at=reset_at,
            )
        return classify_text(message)


@register
class Opencode(Agent):
    """`opencode run --format json --auto -- <prompt>`."""

    name = "opencode"
    executable = "opencode"
    prompt_mode = "arg"
    install_hint = "npm install -g opencode-ai, then `opencode auth login`"
    auth_fix = "run `opencode auth login`, or set the key of the provider in opencode.json"
    cost_source = "reported"
    tested_versions = ("1.18.",)
    api_hosts = ("api.anthropic.com", "api.openai.com", "opencode.ai", "models.dev")
    base_url_vars = ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL")
    env_prefixes = ("OPENCODE_", "ANTHROPIC_", "OPENAI_")
    home_paths = (".config/opencode", ".local/share/opencode", ".local/state/opencode")

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        # --auto: approve tool permissions without a person to ask (like claude's skip flag).
        argv = [*self.command, "run", "--format", "json", "--auto"]
        if self.model:
            argv.append(f"--model={self.model}")
        argv += self.args
        if self.mode == "file":
            return [*argv, f"--file={prompt_file}", "--", "Do the task in the attached file."]
        # opencode reads no prompt from stdin, so "stdin" passes it as the message too.
        return [*argv, "--", prompt]

    def stdin(self, prompt: str) -> bytes | None:
        return None

    def attempt_env(self, run_dir: Path) -> dict[str, str]:
        # Two opencodes sharing one data dir's opencode.db fail with "database is locked"; its
        # own database per attempt keeps the login (auth.json beside it) shared.
        if "OPENCODE_DB" in self.extra_env or "OPENCODE_DB" in os.environ:
            return {}
        return {"OPENCODE_DB": str(run_dir / "opencode.db")}

    def new_parser(self) -> StreamParser:
        return self.configure(OpencodeParser())
