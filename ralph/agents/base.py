"""The contract between the loop and the agent adapters.

An adapter says how to launch one CLI (`argv`, `stdin`, `env`) and how to read its output
(`new_parser()`); the loop's process runner owns the subprocess, its process group, timeouts and
output files, and acts on the signals the parser returns while the agent is still running.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from ralph.errors import ConfigError

PromptMode = Literal["stdin", "arg", "file"]
SignalKind = Literal["auth_failed", "rate_limited"]


@dataclass
class AgentSignal:
    """Something the loop must act on at once, before the agent exits.

    auth_failed: stop every worker (no attempt counted). rate_limited: pause every worker until
    `reset_at` (epoch seconds) or for `retry_after` seconds, then retry (no attempt counted).
    """

    kind: SignalKind
    message: str
    retry_after: float | None = None
    reset_at: float | None = None


@dataclass
class AgentReport:
    """What the agent said about its own run, filled in by the parser as lines arrive."""

    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    session_id: str | None = None
    num_turns: int | None = None
    is_error: bool = False
    result_text: str | None = None
    changed_paths: list[str] = field(default_factory=list)


class StreamParser:
    """Reads one run's output line by line; the default keeps no state and signals nothing."""

    def __init__(self) -> None:
        self.report = AgentReport()

    def feed(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        """Parse one line (without its newline); return signals to act on now."""
        return []

    def finish(self, exit_code: int) -> None:
        """Called once after the process exits."""


class Agent:
    """Base adapter: subclasses set the class attributes and override what differs."""

    name: ClassVar[str] = ""
    executable: ClassVar[str] = ""
    prompt_mode: ClassVar[PromptMode] = "stdin"
    install_hint: ClassVar[str] = ""

    def __init__(
        self,
        *,
        command: Sequence[str] | None = None,
        args: Sequence[str] = (),
        model: str | None = None,
        prompt_mode: PromptMode | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.command = list(command) if command else [self.executable]
        self.args = list(args)
        self.model = model
        self.mode: PromptMode = prompt_mode or self.prompt_mode
        self.extra_env = dict(env or {})

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        """The argv to launch (never run through a shell). Prompt text is never a flag."""
        argv = [*self.command, *self.args]
        if self.mode == "arg":
            argv.append(prompt)
        elif self.mode == "file":
            argv.append(str(prompt_file))
        return argv

    def stdin(self, prompt: str) -> bytes | None:
        """Bytes to write to the agent's stdin (then closed); None for no stdin."""
        return prompt.encode() if self.mode == "stdin" else None

    def env(self) -> dict[str, str]:
        """Variables added to the agent's environment."""
        return dict(self.extra_env)

    def new_parser(self) -> StreamParser:
        return StreamParser()

    def check_installed(self) -> str:
        """The resolved executable path, or ConfigError naming what to install."""
        exe = self.command[0]
        found = (
            shutil.which(exe) if os.sep not in exe else (exe if os.access(exe, os.X_OK) else None)
        )
        if not found:
            hint = self.install_hint or "install it or set its command in ralph.toml"
            raise ConfigError(f"agent {self.name!r}: {exe!r} is not on PATH", hint=hint)
        return found
