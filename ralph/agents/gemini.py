"""Google Gemini CLI: headless when stdin is not a terminal, prompt on stdin, stream-json events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ralph.agents.base import Agent, AgentSignal, StreamParser
from ralph.agents.jsonl import JsonLinesParser, as_int
from ralph.agents.registry import register
from ralph.agents.text import classify_text

WRITE_TOOLS = ("write_file", "replace", "edit")


class GeminiParser(JsonLinesParser):
    """Reads `--output-format stream-json` events (init, message, tool_use, error, result).

    API errors and retries ("Attempt 1 failed with status 429. Retrying with backoff...") go to
    stderr, where the text matcher catches them on the first attempt.
    """

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
            self.report.input_tokens = as_int(stats.get("input_tokens"))
            self.report.output_tokens = as_int(stats.get("output_tokens"))
        if event.get("status") in (None, "success"):
            return None
        self.report.is_error = True
        error = event.get("error")
        message = str(error.get("message") if isinstance(error, dict) else error or "")
        if message:
            self.report.result_text = message
        return classify_text(message)


@register
class Gemini(Agent):
    """`gemini --output-format stream-json --approval-mode yolo` with the prompt on stdin."""

    name = "gemini"
    executable = "gemini"
    prompt_mode = "stdin"
    install_hint = "npm install -g @google/gemini-cli, then `gemini` once to log in"

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

    def new_parser(self) -> StreamParser:
        return GeminiParser()
