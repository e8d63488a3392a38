"""The contract between the loop and the agent adapters.

An adapter says how to launch one CLI (`argv`, `stdin`, `env`) and how to read its output
(`new_parser()`); the loop's process runner owns the subprocess, its process group, timeouts and
output files, and acts on the signals the parser returns while the agent is still running.

An agent's text is never a control channel. `feed()` may signal only from structured events (a
JSON error event, an API retry record) and from a CLI's own fixed-format lines (a login prompt);
free-text matching of error messages happens in `final_signal()`, which the loop calls only after
the process failed (non-zero exit, or the parser's report says `is_error`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from ralph.errors import ConfigError
from ralph.pricing import estimate
from ralph.sandbox.policy import host_port, url_host_port

PromptMode = Literal["stdin", "arg", "file"]
SignalKind = Literal["auth_failed", "rate_limited", "network_down"]
CostSource = Literal["reported", "estimated", "none"]
Credentials = tuple[bool | None, str]  # (True ok / False missing / None cannot tell, detail)
VERSION_RE = re.compile(r"\d+\.\d+(?:\.\d+)?")
NETWORK_FIX = "check the network or the API base URL the agent uses; workers pause and retry"


@dataclass
class AgentSignal:
    """Something the loop must act on at once, before the agent exits.

    auth_failed: stop every worker (no attempt counted). rate_limited: pause every worker until
    `reset_at` (epoch seconds) or for `retry_after` seconds, then retry (no attempt counted).
    network_down: pause every worker with backoff (no attempt counted). `fix` is the one line
    to show the user ("run `codex login`").
    """

    kind: SignalKind
    message: str
    retry_after: float | None = None
    reset_at: float | None = None
    fix: str | None = None


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
    cost_estimated: bool = False  # cost_usd computed from tokens with ralph.pricing
    model: str | None = None  # the model the agent said it used, when it says


class StreamParser:
    """Reads one run's output line by line; the default keeps no state and signals nothing.

    The adapter sets `model`, `prices` (ralph.toml `[prices]`) and `auth_fix` after creating it.
    """

    model: str | None = None
    prices: Mapping[str, Mapping[str, float]] = {}
    auth_fix: str | None = None

    def __init__(self) -> None:
        self.report = AgentReport()

    def feed(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        """Parse one line (without its newline); return signals to act on now."""
        return []

    def final_signal(self, exit_code: int | None) -> AgentSignal | None:
        """A signal read from how the run failed (exit code, the CLI's error lines on stderr).

        None when the process succeeded: an agent that exits 0 and reports no error never stops
        or pauses the run, whatever it printed.
        """
        if exit_code == 0 and not self.report.is_error:
            return None
        return self.failure_signal(exit_code)

    def failure_signal(self, exit_code: int | None) -> AgentSignal | None:
        """Classify a failed run; adapters override (the default knows nothing)."""
        return None

    def finish(self, exit_code: int) -> None:
        """Called once after the process exits: estimates the cost from tokens if none was given."""
        self.estimate_cost()

    def estimate_cost(self) -> None:
        """Fill `cost_usd` from the token counts and the price table when the CLI gave no cost."""
        report = self.report
        if report.cost_usd is not None or not (report.input_tokens or report.output_tokens):
            return

        model = report.model or self.model
        cost = estimate(model, report.input_tokens or 0, report.output_tokens or 0, self.prices)
        if cost is not None:
            report.cost_usd, report.cost_estimated = cost, True

    def signal(self, kind: SignalKind, message: str, **times: float | None) -> AgentSignal:
        """An AgentSignal with this agent's fix for its kind filled in."""
        fix = {"auth_failed": self.auth_fix, "network_down": NETWORK_FIX}.get(kind)
        return AgentSignal(kind, message, fix=fix, **times)  # type: ignore[arg-type]


class Agent:
    """Base adapter: subclasses set the class attributes and override what differs."""

    name: ClassVar[str] = ""
    executable: ClassVar[str] = ""
    prompt_mode: ClassVar[PromptMode] = "stdin"
    install_hint: ClassVar[str] = ""
    # One line telling the user how to give this CLI credentials (shown on auth_failed).
    auth_fix: ClassVar[str] = "check the agent's credentials"
    # Where AgentReport.cost_usd comes from: the CLI's own figure, or tokens x ralph.pricing.
    cost_source: ClassVar[CostSource] = "none"
    # The versions this adapter was tested with (a prefix of `--version`'s number), for doctor.
    tested_versions: ClassVar[tuple[str, ...]] = ()
    # What a user sets up once for this CLI (`ralph init` writes these lines as comments).
    setup: ClassVar[tuple[str, ...]] = ()
    # The sandbox (ralph/sandbox): the hosts this CLI's API lives on, the variables that point
    # it elsewhere, the prefixes of its credential variables (none: a command agent, which gets
    # no secrets), and what under $HOME it writes (bound back writable: its login keeps working).
    api_hosts: ClassVar[tuple[str, ...]] = ()
    base_url_vars: ClassVar[tuple[str, ...]] = ()
    env_prefixes: ClassVar[tuple[str, ...]] = ()
    home_paths: ClassVar[tuple[str, ...]] = ()
    # Globs (at the workspace's top) of caches the CLI leaves that are never the task's work.
    scratch: ClassVar[tuple[str, ...]] = ()

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
        self.prices: Mapping[str, Mapping[str, float]] = {}  # ralph.toml [prices], set by the CLI

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        """The argv to launch (never run through a shell). Prompt text is never a flag."""
        argv = [*self.command, *self.args]
        if self.mode == "arg":
            argv.append(prompt)
        elif self.mode == "file":
            argv.append(str(prompt_file))
        return argv

    def positional(
        self, argv: list[str], prompt: str, prompt_file: Path, stdin: tuple[str, ...] = ()
    ) -> list[str]:
        """`argv`, the model, the user's args, then the prompt after `--` ("arg"), a line
        pointing to its file ("file"), or `stdin` (what tells the CLI to read it there)."""
        argv = [*argv, *([f"--model={self.model}"] if self.model else []), *self.args]
        if self.mode == "arg":
            return [*argv, "--", prompt]
        if self.mode == "file":
            return [*argv, "--", f"Read the task in {prompt_file} and do it."]
        return [*argv, *stdin]

    def stdin(self, prompt: str) -> bytes | None:
        """Bytes to write to the agent's stdin (then closed); None for no stdin."""
        return prompt.encode() if self.mode == "stdin" else None

    def env(self) -> dict[str, str]:
        """Variables added to the agent's environment."""
        return dict(self.extra_env)

    def attempt_env(self, run_dir: Path) -> dict[str, str]:
        """Variables for one attempt only (state a CLI must not share between parallel runs),
        under `run_dir`, the attempt's own folder. The user's own settings win."""
        return {}

    def new_parser(self) -> StreamParser:
        return self.configure(StreamParser())

    def sandbox_hosts(self, env: Mapping[str, str]) -> list[str]:
        """host:port the sandbox lets it reach: its API hosts and any base URL it is given."""

        hosts = [host_port(h) for h in self.api_hosts]
        for var in self.base_url_vars:
            found = url_host_port(env[var]) if env.get(var) else None
            if found:
                hosts.append(found)
        return hosts

    def in_sandbox(self, argv: list[str]) -> list[str]:
        """The argv to launch inside ralph's sandbox (an adapter drops its own sandbox there)."""
        return argv

    def sandbox_env_names(self) -> list[str]:
        """Exact variable names it needs beyond `env_prefixes` (codex: a provider's env_key)."""
        return []

    def drop_scratch(self, workspace: Path) -> list[str]:
        """Remove the CLI's `scratch` caches from `workspace` before its work is collected,
        unless the repository tracks them. Returns the names removed."""
        dropped = []
        for pattern in self.scratch:
            for path in sorted(workspace.glob(pattern)):
                tracked = subprocess.run(
                    ["git", "ls-files", "--", path.name], cwd=workspace, capture_output=True,
                    text=True, stdin=subprocess.DEVNULL,
                )  # fmt: skip
                if tracked.returncode != 0 or tracked.stdout.strip():
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                dropped.append(path.name)
        return dropped

    def configure(self, parser: StreamParser) -> StreamParser:
        """Hand the parser what it needs to price tokens and name the fix for auth failures."""
        parser.model = self.model
        parser.prices = self.prices
        parser.auth_fix = self.auth_fix
        return parser

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

    def uses_own_binary(self) -> bool:
        """True when the command is the CLI itself (not a wrapper the user configured)."""
        return bool(self.executable) and os.path.basename(self.command[0]) == self.executable

    def version(self, timeout: float = 15.0) -> str | None:
        """The version number `<command> --version` prints, or None if it prints none."""
        try:
            out = subprocess.run(
                [self.command[0], "--version"],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env()},
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        found = VERSION_RE.search(out.stdout or out.stderr or "")
        return found.group(0) if found else None

    def credentials(self, env: Mapping[str, str], home: Path) -> Credentials:
        """Whether this CLI has credentials, found cheaply and offline (no API call).

        `env` is the environment the agent will get; `home` its home folder. The default
        cannot tell; adapters that can, say.
        """
        return None, "not checked for this agent"
