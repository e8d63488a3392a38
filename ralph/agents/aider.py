"""aider: one message from a file, auto-confirm, and no commits of its own (ralph commits)."""

from __future__ import annotations

from pathlib import Path

from ralph.agents.base import Agent, StreamParser
from ralph.agents.registry import register
from ralph.agents.text import TextParser


@register
class Aider(Agent):
    """`aider --message-file=<prompt.md> --yes-always --no-auto-commits --no-dirty-commits`.

    The prompt goes in a file by default: long prompts stay out of argv and never read as flags.
    """

    name = "aider"
    executable = "aider"
    prompt_mode = "file"
    install_hint = "python -m pip install aider-install && aider-install"

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        argv = [
            *self.command,
            "--yes-always",
            "--no-auto-commits",
            "--no-dirty-commits",
            "--no-check-update",
            "--no-pretty",
        ]
        if self.model:
            argv.append(f"--model={self.model}")
        argv += self.args
        if self.mode == "arg":
            return [*argv, f"--message={prompt}"]
        # aider reads no prompt from stdin, so "stdin" falls back to the prompt file too.
        return [*argv, f"--message-file={prompt_file}"]

    def stdin(self, prompt: str) -> bytes | None:
        return None

    def new_parser(self) -> StreamParser:
        return TextParser()
