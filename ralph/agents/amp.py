"""Amp (`amp -x --stream-json`): prompt on stdin, Claude Code-compatible stream JSON."""

from __future__ import annotations

from pathlib import Path

from ralph.agents.base import Agent, StreamParser
from ralph.agents.claude import ClaudeParser
from ralph.agents.registry import register
from ralph.errors import ConfigError


@register
class Amp(Agent):
    """`amp --dangerously-allow-all -x --stream-json`, prompt on stdin (execute mode reads it)."""

    name = "amp"
    executable = "amp"
    prompt_mode = "stdin"
    install_hint = "npm install -g @sourcegraph/amp, then `amp login` or set AMP_API_KEY"

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        if self.model:
            raise ConfigError(
                "[agents.amp]: amp has no --model flag",
                hint='pick its model through its mode, e.g. args = ["--mode", "high"]',
            )

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        argv = [*self.command, "--dangerously-allow-all", "--no-notifications", *self.args]
        if self.mode == "stdin":
            return [*argv, "--stream-json", "-x"]
        text = prompt if self.mode == "arg" else f"Read the task in {prompt_file} and do it."
        return [*argv, "--stream-json", f"--execute={text}"]

    def new_parser(self) -> StreamParser:
        return ClaudeParser()
