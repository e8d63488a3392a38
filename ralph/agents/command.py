"""Any command as an agent: argv from ralph.toml or `--agent-cmd`, prompt on stdin, arg or file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from ralph.agents.base import Agent, AgentSignal, StreamParser
from ralph.agents.claude import ClaudeParser
from ralph.agents.registry import register
from ralph.errors import ConfigError

PROMPT = "{prompt}"
PROMPT_FILE = "{prompt_file}"


class CommandParser(ClaudeParser):
    """Text matching on every line, plus claude-shaped JSON lines a wrapper script may pass on."""

    def feed(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        if stream == "stdout" and line.lstrip().startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and "type" in event:
                return super().feed(line, stream)
        return self.text(line, stream)


@register
class Command(Agent):
    """A user's own command; `{prompt}` / `{prompt_file}` in its args mark where they go.

    Without a placeholder, "arg" mode appends `--` and the prompt, "file" mode the file's path,
    so task text is never read as one of the command's flags.
    """

    name = "command"
    executable = ""
    prompt_mode = "stdin"
    install_hint = 'set `command = ["my-agent", "--flag"]` under [agents.command] in ralph.toml'

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        if self.command == [""]:
            raise ConfigError("the command agent needs a command", hint=self.install_hint)

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        template = [*self.command, *self.args]
        placed = any(PROMPT in a or PROMPT_FILE in a for a in template)
        argv = [
            a.replace(PROMPT_FILE, str(prompt_file)).replace(PROMPT, prompt)
            if PROMPT in a or PROMPT_FILE in a
            else a
            for a in template
        ]
        if placed or self.mode == "stdin":
            return argv
        if self.mode == "arg":
            return [*argv, "--", prompt]
        return [*argv, str(prompt_file)]

    def stdin(self, prompt: str) -> bytes | None:
        return prompt.encode() if self.mode == "stdin" else None

    def new_parser(self) -> StreamParser:
        return CommandParser()
