"""OpenAI Codex CLI (`codex exec --json`): prompt on stdin via `-`, JSONL events on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ralph.agents.base import Agent, AgentSignal, StreamParser
from ralph.agents.jsonl import JsonLinesParser, as_int
from ralph.agents.registry import register
from ralph.agents.text import classify_text


class CodexParser(JsonLinesParser):
    """Reads `codex exec --json` events (thread.started, item.*, turn.completed/failed, error).

    codex retries API errors five times, printing each as
    `{"type":"error","message":"Reconnecting... 1/5 (unexpected status 401 Unauthorized: ...)"}`;
    connection trouble looks the same without a status, so only the matcher's texts signal.
    """

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        kind = event.get("type")
        if kind == "thread.started" and event.get("thread_id"):
            self.report.session_id = str(event["thread_id"])
        elif kind == "turn.completed":
            self._usage(event.get("usage"))
        elif kind == "item.completed":
            self._item(event.get("item"))
        elif kind == "error":
            return [classify_text(str(event.get("message") or ""))]
        elif kind == "turn.failed":
            self.report.is_error = True
            error = event.get("error")
            message = str(error.get("message") if isinstance(error, dict) else error or "")
            self.report.result_text = message or self.report.result_text
            return [classify_text(message)]
        return []

    def _usage(self, usage: object) -> None:
        self.report.num_turns = (self.report.num_turns or 0) + 1
        if not isinstance(usage, dict):
            return
        # cached_input_tokens is the cached part of input_tokens, not extra input.
        self.report.input_tokens = (self.report.input_tokens or 0) + as_int(
            usage.get("input_tokens")
        )
        self.report.output_tokens = (self.report.output_tokens or 0) + as_int(
            usage.get("output_tokens")
        )

    def _item(self, item: object) -> None:
        if not isinstance(item, dict):
            return
        if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
            self.report.result_text = item["text"]
        elif item.get("type") == "file_change":
            for change in item.get("changes") or []:
                if isinstance(change, dict) and change.get("kind") != "delete":
                    self.add_path(change.get("path"))


@register
class Codex(Agent):
    """`codex exec --json --skip-git-repo-check --sandbox workspace-write -` (prompt on stdin)."""

    name = "codex"
    executable = "codex"
    prompt_mode = "stdin"
    install_hint = "npm install -g @openai/codex, then `codex login`"

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        # workspace-write lets it edit the checkout but not .git, which suits ralph committing.
        argv = [
            *self.command,
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--sandbox",
            "workspace-write",
        ]
        if self.model:
            argv.append(f"--model={self.model}")
        argv += self.args
        if self.mode == "arg":
            return [*argv, "--", prompt]
        if self.mode == "file":
            return [*argv, "--", f"Read the task in {prompt_file} and do it."]
        return [*argv, "-"]

    def new_parser(self) -> StreamParser:
        return CodexParser()
