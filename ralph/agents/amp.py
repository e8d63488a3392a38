"""Amp (`amp -x --stream-json`): the prompt in argv, Claude Code-compatible stream JSON."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from ralph.agents.base import Agent, AgentSignal, Credentials, StreamParser
from ralph.agents.claude import ClaudeParser
from ralph.agents.registry import register
from ralph.errors import ConfigError

# recorded (amp 0.0.1790142911, no key): it then reads a login code from stdin and waits.
LOGIN_LINES = ("No API key found", "Starting login flow", "When prompted, paste your code")
# recorded (amp 0.0.1790142911, server port closed): "Error: Couldn't connect to the Amp server
# at http://127.0.0.1:9." on stderr, exit 1.
OFFLINE = "couldn't connect to the amp server"
MAX_ARG = 100_000  # bytes; Linux refuses a single argument over 128 KiB


class AmpParser(ClaudeParser):
    """claude's stream JSON, plus amp's login prompt: an auth failure the moment it shows."""

    def early(self, line: str, stream: Literal["stdout", "stderr"]) -> AgentSignal | None:
        text = line.strip()
        if text.startswith(LOGIN_LINES):
            return self.signal("auth_failed", f"amp: {text}")
        return None

    def failure_signal(self, exit_code: int | None) -> AgentSignal | None:
        found = super().failure_signal(exit_code)
        if found is None:
            offline = [line for line in self.stderr if OFFLINE in line.lower()]
            if offline:
                found = self.signal("network_down", f"amp: {offline[-1].strip()}")
        return found


@register
class Amp(Agent):
    """`amp --dangerously-allow-all --no-notifications --stream-json --execute=<prompt>`.

    The prompt goes in argv, not on stdin, and stdin is empty: without credentials amp starts a
    login flow that reads a code from stdin, and would read the task's prompt as that code.
    """

    name = "amp"
    executable = "amp"
    prompt_mode = "arg"
    install_hint = "npm install -g @sourcegraph/amp, then `amp login` or set AMP_API_KEY"
    auth_fix = "set AMP_API_KEY or run `amp login`"
    cost_source = "reported"
    tested_versions = ("0.0.",)
    setup = ("set AMP_API_KEY or run `amp login`",)
    api_hosts = ("ampcode.com",)
    base_url_vars = ("AMP_URL",)
    env_prefixes = ("AMP_",)
    home_paths = (".amp", ".config/amp", ".local/share/amp", ".cache/amp")

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        if self.model:
            raise ConfigError(
                "[agents.amp]: amp has no --model flag",
                hint='pick its model through its mode, e.g. args = ["--mode", "high"]',
            )

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        argv = [*self.command, "--dangerously-allow-all", "--no-notifications", *self.args]
        if self.mode == "arg" and len(prompt.encode()) <= MAX_ARG:
            text = prompt
        else:  # "stdin" and "file", and prompts too long for one argument
            text = f"Read the task in {prompt_file} and do it."
        return [*argv, "--stream-json", f"--execute={text}"]

    def stdin(self, prompt: str) -> bytes | None:
        return None

    def credentials(self, env: Mapping[str, str], home: Path) -> Credentials:
        if env.get("AMP_API_KEY"):
            return True, "AMP_API_KEY is set"
        if (home / ".local" / "share" / "amp" / "secrets.json").is_file():
            return True, "logged in (~/.local/share/amp/secrets.json)"
        return False, "no AMP_API_KEY and no amp login found"

    def new_parser(self) -> StreamParser:
        return self.configure(AmpParser())
