"""aider: one message from a file, auto-confirm, and no commits of its own (ralph commits)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from ralph.agents.base import Agent, AgentSignal, StreamParser
from ralph.agents.registry import register
from ralph.agents.text import TextParser

# "Tokens: 12k sent, 345 received. Cost: $0.04 message, $0.10 session."
TOKENS_RE = re.compile(r"Tokens: ([\d.]+)(k?) sent, ([\d.]+)(k?) received")
COST_RE = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session")


class AiderParser(TextParser):
    """Text matching plus aider's per-message token and session cost lines."""

    def feed(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        if m := TOKENS_RE.search(line):
            report = self.report
            report.input_tokens = (report.input_tokens or 0) + _count(m[1], m[2])
            report.output_tokens = (report.output_tokens or 0) + _count(m[3], m[4])
            report.num_turns = (report.num_turns or 0) + 1
        if m := COST_RE.search(line):
            self.report.cost_usd = float(m[2])  # the session total so far
        return super().feed(line, stream)


def _count(number: str, k: str) -> int:
    return int(float(number) * (1000 if k else 1))


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
        return AiderParser()
