"""Cursor's agent CLI (`cursor-agent -p`): prompt after `--`, Claude-style stream-json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ralph.agents.base import Agent, AgentSignal, StreamParser
from ralph.agents.claude import ClaudeParser
from ralph.agents.registry import register

WRITE_CALLS = ("writeToolCall", "editToolCall")


class CursorParser(ClaudeParser):
    """Claude's events plus cursor's own `tool_call` events (file writes)."""

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        if event.get("type") == "tool_call" and event.get("subtype") == "completed":
            call = event.get("tool_call")
            for key in WRITE_CALLS:
                body = call.get(key) if isinstance(call, dict) else None
                args = body.get("args") if isinstance(body, dict) else None
                if isinstance(args, dict):
                    self.add_path(args.get("path"))
        return super().event(event)


@register
class Cursor(Agent):
    """`cursor-agent -p --output-format stream-json --force -- <prompt>`."""

    name = "cursor"
    executable = "cursor-agent"
    prompt_mode = "arg"
    install_hint = "curl https://cursor.com/install -fsS | bash, then `cursor-agent login`"
    auth_fix = "run `cursor-agent login` or set CURSOR_API_KEY"
    cost_source = "estimated"
    api_hosts = ("api2.cursor.sh", "api.cursor.sh", "cursor.com")
    env_prefixes = ("CURSOR_",)
    home_paths = (".cursor", ".config/cursor")

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        # --force: run commands and writes without asking; there is nobody to ask.
        argv = [*self.command, "-p", "--output-format", "stream-json", "--force"]
        if self.model:
            argv.append(f"--model={self.model}")
        argv += self.args
        if self.mode == "file":
            return [*argv, "--", f"Read the task in {prompt_file} and do it."]
        # The prompt is an argument in every other mode: cursor-agent -p reads none from stdin.
        return [*argv, "--", prompt]

    def stdin(self, prompt: str) -> bytes | None:
        return None

    def new_parser(self) -> StreamParser:
        return self.configure(CursorParser())
