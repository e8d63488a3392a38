"""Google Gemini CLI: headless when stdin is not a terminal, prompt on stdin, stream-json events."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ralph.agents.base import Agent, AgentSignal, Credentials, StreamParser
from ralph.agents.jsonl import JsonLinesParser, as_int, count
from ralph.agents.registry import register
from ralph.agents.text import classify_lines, classify_text
from ralph.pricing import estimate

WRITE_TOOLS = ("write_file", "replace", "edit")
EXIT_AUTH = 41  # FATAL_AUTHENTICATION_ERROR
# recorded (0.61.0): gemini's retry lines on stderr, one per failed API call:
#   "Attempt 1 failed: Resource has been exhausted (e.g. check quota)." then
#   "Suggested retry after 20s.. Retrying after 20732ms..."
#   "Attempt 1 failed. Retrying with backoff... Error: exception TypeError: fetch failed ..."
#   "Attempt 1 failed with status 429. Retrying with backoff..." (earlier versions)
ATTEMPT_RE = re.compile(r"^Attempt \d+ failed\b")
RETRY_RE = re.compile(r"^(?:Suggested retry after|Retrying after)\b")
# recorded (0.61.0): the two ways it refuses to start without usable auth (exit 41)
AUTH_LINES = ("Please set an Auth method", "Invalid auth method selected")


class GeminiParser(JsonLinesParser):
    """Reads `--output-format stream-json` events (init, message, tool_use, error, result).

    API errors and retries go to stderr as gemini's own "Attempt N failed ..." lines; the first
    one signals (a 429 with the retry time named on the line after it, or no network). Exit 41
    is gemini's authentication failure.
    """

    def __init__(self) -> None:
        super().__init__()
        self.attempt: str | None = None  # an "Attempt N failed" line waiting for its retry line
        self.by_model: dict[str, tuple[int, int]] = {}  # model -> (input, output) tokens

    def early(self, line: str, stream: Literal["stdout", "stderr"]) -> AgentSignal | None:
        if stream != "stderr":
            return None
        text = line.strip()
        if ATTEMPT_RE.match(text):
            self.attempt = text
            if "Retrying" not in text and "status" not in text:
                return None  # the time comes on the next line
            return classify_text(text)
        if self.attempt is not None and RETRY_RE.match(text):
            attempt, self.attempt = self.attempt, None
            return classify_text(f"{attempt} {text}")
        if text.startswith(AUTH_LINES):
            return self.signal("auth_failed", f"gemini: {text}")
        return None

    def failure_signal(self, exit_code: int | None) -> AgentSignal | None:
        found = classify_lines(self.stderr)
        if exit_code == EXIT_AUTH and (found is None or found.kind != "auth_failed"):
            found = AgentSignal("auth_failed", "gemini exited 41 (authentication error)")
        return self.with_fix(found)

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        kind = event.get("type")
        if kind == "init" and event.get("session_id"):
            self.report.session_id = str(event["session_id"])
        elif kind == "message" and event.get("role") == "assistant":
            content = event.get("content")
            if isinstance(content, str):
                previous = self.report.result_text if event.get("delta") else None
                self.report.result_text = (previous or "") + content
        elif kind == "tool_use" and event.get("tool_name") in WRITE_TOOLS:
            params = event.get("parameters")
            if isinstance(params, dict):
                self.add_path(params.get("file_path") or params.get("absolute_path"))
        elif kind == "error":
            return [classify_text(str(event.get("message") or ""))]
        elif kind == "result":
            return [self._result(event)]
        return []

    def _result(self, event: dict[str, Any]) -> AgentSignal | None:
        stats = event.get("stats")
        if isinstance(stats, dict):
            self.report.input_tokens = count(stats.get("input_tokens"))
            self.report.output_tokens = count(stats.get("output_tokens"))
            models = stats.get("models")
            self.by_model = {
                str(name): (as_int(m.get("input_tokens")), as_int(m.get("output_tokens")))
                for name, m in (models.items() if isinstance(models, dict) else ())
                if isinstance(m, dict)
            }
        if event.get("status") in (None, "success"):
            return None
        self.report.is_error = True
        error = event.get("error")
        message = str(error.get("message") if isinstance(error, dict) else error or "")
        if message:
            self.report.result_text = message
        return classify_text(message)

    def estimate_cost(self) -> None:
        """Price each model gemini used (its router calls a small model first) at its own rate."""
        by_model = self.by_model
        if self.report.cost_usd is not None or not by_model:
            return super().estimate_cost()

        costs = [estimate(name, i, o, self.prices) for name, (i, o) in by_model.items()]
        self.report.model = max(by_model, key=lambda n: sum(by_model[n]))
        if all(c is not None for c in costs):  # a partial sum would understate the cost
            self.report.cost_usd = round(sum(c for c in costs if c is not None), 6)
            self.report.cost_estimated = True
        else:
            super().estimate_cost()


@register
class Gemini(Agent):
    """`gemini --output-format stream-json --approval-mode yolo` with the prompt on stdin."""

    name = "gemini"
    executable = "gemini"
    prompt_mode = "stdin"
    install_hint = "npm install -g @google/gemini-cli, then `gemini` once to log in"
    auth_fix = "set GEMINI_API_KEY or choose an auth method in ~/.gemini/settings.json"
    cost_source = "estimated"
    tested_versions = ("0.61.",)
    setup = (
        "set GEMINI_API_KEY and, in ~/.gemini/settings.json,",
        '{"security": {"auth": {"selectedType": "gemini-api-key"}}} (else gemini exits 41)',
    )
    # The API, and the Google login hosts its oauth-personal / Code Assist auth talks to.
    api_hosts = (
        "generativelanguage.googleapis.com",
        "cloudcode-pa.googleapis.com",
        "oauth2.googleapis.com",
        "accounts.google.com",
    )
    base_url_vars = ("GOOGLE_GEMINI_BASE_URL", "GEMINI_BASE_URL")
    env_prefixes = ("GEMINI_", "GOOGLE_")
    home_paths = (".gemini",)

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        # Headless gemini exits (55) in a folder the user never trusted unless told --skip-trust.
        argv = [
            *self.command,
            "--output-format",
            "stream-json",
            "--approval-mode",
            "yolo",
            "--skip-trust",
        ]
        if self.model:
            argv.append(f"--model={self.model}")
        argv += self.args
        if self.mode == "arg":
            argv.append(f"--prompt={prompt}")
        elif self.mode == "file":
            argv.append(f"--prompt=Read the task in {prompt_file} and do it.")
        return argv

    def credentials(self, env: Mapping[str, str], home: Path) -> Credentials:
        try:
            settings = json.loads((home / ".gemini" / "settings.json").read_text())
        except (OSError, ValueError):
            settings = {}
        settings = settings if isinstance(settings, dict) else {}
        security = settings.get("security") if isinstance(settings.get("security"), dict) else {}
        auth = security.get("auth") if isinstance(security.get("auth"), dict) else {}
        chosen = auth.get("selectedType") or settings.get("selectedAuthType")  # old name
        if not chosen:
            if env.get("GOOGLE_GENAI_USE_VERTEXAI") or env.get("GOOGLE_GENAI_USE_GCA"):
                return True, "Vertex AI / Code Assist chosen by environment variable"
            return False, "no auth method in ~/.gemini/settings.json (security.auth.selectedType)"
        if chosen == "gemini-api-key":
            if env.get("GEMINI_API_KEY"):
                return True, "gemini-api-key with GEMINI_API_KEY set"
            return False, "settings choose gemini-api-key but GEMINI_API_KEY is not set"
        if chosen == "oauth-personal":
            found = (home / ".gemini" / "oauth_creds.json").is_file()
            return found, "oauth-personal " + ("logged in" if found else "but never logged in")
        return None, f"auth method {chosen!r} not checked"

    def new_parser(self) -> StreamParser:
        return self.configure(GeminiParser())
