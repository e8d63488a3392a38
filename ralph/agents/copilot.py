"""GitHub Copilot CLI (`copilot -p --output-format json`): the prompt in argv, JSON events.

Recorded with copilot 1.0.102 against tests/support/model_server.py (a BYOK provider through
COPILOT_PROVIDER_BASE_URL): a failed run ends with a `session.error` event whose `errorType`
is `authentication`, `rate_limit` or `query` (a provider it could not connect to), then a
`result` event with `exitCode` 1. A 401 or 429 shows first as a `model.call_failure` event
with its `statusCode` (a 429 is retried for minutes). Without any credentials it prints "Error:
No authentication information found." on stderr and exits 1. It reports premium requests, never
tokens or dollars.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ralph.agents.base import Agent, AgentSignal, Credentials, StreamParser
from ralph.agents.jsonl import JsonLinesParser
from ralph.agents.registry import register
from ralph.agents.text import classify_text, parse_reset

NO_AUTH = "Error: No authentication information found"
OFFLINE = ("Could not connect to", "Failed native model HTTP request")
TOKEN_VARS = ("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN")
MAX_ARG = 100_000  # bytes; Linux refuses a single argument over 128 KiB


class CopilotParser(JsonLinesParser):
    """Reads `--output-format json` events: assistant.message, tool.execution_complete (the
    files it edited), session.error, result (exit code, session id)."""

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        kind = event.get("type")
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if kind == "assistant.message" and isinstance(data.get("content"), str):
            if data["content"]:
                self.report.result_text = data["content"]
            self.report.num_turns = (self.report.num_turns or 0) + 1
        elif kind == "tool.execution_complete" and data.get("success"):
            for edit in data.get("fileEdits") or []:
                if isinstance(edit, dict):
                    self.add_path(edit.get("path"))
        elif kind == "model.call_failure" and data.get("statusCode") in (401, 403, 429):
            # copilot retries a 429 itself for minutes (and announces each retry): the first
            # failure is enough to pause the loop, or to stop it for a 401
            return [self._error({"statusCode": data["statusCode"],
                                 "message": _message(data.get("errorMessage"))})]  # fmt: skip
        elif kind == "session.error":
            return [self._error(data)]
        elif kind == "result":
            if event.get("sessionId"):
                self.report.session_id = str(event["sessionId"])
            if event.get("exitCode") not in (None, 0):
                self.report.is_error = True
        return []

    def _error(self, data: dict[str, Any]) -> AgentSignal | None:
        self.report.is_error = True
        message = str(data.get("message") or data.get("errorType") or "error")
        self.report.result_text = message
        kind, status = data.get("errorType"), data.get("statusCode")
        text = f"copilot: {' '.join(message.split())}"
        if kind == "authentication" or status in (401, 403):
            return self.signal("auth_failed", text)
        if kind == "rate_limit" or status == 429:
            retry_after, reset_at = parse_reset(message)
            return AgentSignal("rate_limited", text, retry_after=retry_after, reset_at=reset_at)
        if status is None and message.startswith(OFFLINE):
            return self.signal("network_down", text)
        return classify_text(message)

    def early(self, line: str, stream: Literal["stdout", "stderr"]) -> AgentSignal | None:
        text = line.strip()
        if text.startswith(NO_AUTH):
            return self.signal("auth_failed", f"copilot: {text}")
        return None


def _message(raw: object) -> str:
    """The provider's error message from a call failure's `errorMessage` (a JSON string)."""
    text = str(raw or "")
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"]
    return text


@register
class Copilot(Agent):
    """`copilot --output-format json --allow-all --no-auto-update --prompt=<prompt>`.

    --allow-all: tools, paths and URLs without asking (there is nobody to ask). The prompt is
    one `--prompt=` argument, so a prompt starting with "-" is never read as a flag.
    """

    name = "copilot"
    executable = "copilot"
    prompt_mode = "arg"
    install_hint = "npm install -g @github/copilot, then `copilot login` or set GH_TOKEN"
    auth_fix = (
        "run `copilot login`, set COPILOT_GITHUB_TOKEN, or set COPILOT_PROVIDER_BASE_URL "
        "and COPILOT_PROVIDER_API_KEY for your own provider"
    )
    cost_source = "none"
    tested_versions = ("1.0.",)
    setup = ("run `copilot login` once, or set COPILOT_GITHUB_TOKEN",)
    api_hosts = ("api.githubcopilot.com", "api.individual.githubcopilot.com", "api.github.com")
    base_url_vars = ("COPILOT_PROVIDER_BASE_URL",)
    env_prefixes = ("COPILOT_",)
    home_paths = (".copilot",)

    def sandbox_env_names(self) -> list[str]:
        """Its login token may be in GH_TOKEN or GITHUB_TOKEN too."""
        return list(TOKEN_VARS)

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        argv = [*self.command, "--output-format", "json", "--allow-all", "--no-auto-update"]
        if self.model:
            argv.append(f"--model={self.model}")
        argv += self.args
        if self.mode == "arg" and len(prompt.encode()) <= MAX_ARG:
            text = prompt
        else:  # "stdin" and "file", and prompts too long for one argument
            text = f"Read the task in {prompt_file} and do it."
        return [*argv, f"--prompt={text}"]

    def stdin(self, prompt: str) -> bytes | None:
        return None

    def credentials(self, env: Mapping[str, str], home: Path) -> Credentials:
        for var in (*TOKEN_VARS, "COPILOT_PROVIDER_BASE_URL"):
            if env.get(var):
                return True, f"{var} is set"
        config = Path(env.get("COPILOT_HOME") or home / ".copilot")
        if (config / "config.json").is_file():
            return None, f"{config}/config.json exists (a `copilot login` is not checked)"
        return False, "no GitHub token, no provider and no copilot login found"

    def new_parser(self) -> StreamParser:
        return self.configure(CopilotParser())
