"""Any command as an agent: argv from ralph.toml or `--agent-cmd`, prompt on stdin, arg or file.

How a command tells ralph why it failed (honoured only when it exits non-zero; nothing it prints
on a successful run is ever read as a signal):

- exit 75 (EX_TEMPFAIL), or a stderr line `ralph: rate-limited until <ISO-8601 or epoch>` /
  `ralph: rate-limited retry-after <seconds>`: rate limited; every worker pauses until then
  (exit 75 without such a line pauses for `rate_limit_pause`);
- exit 77 (EX_NOPERM), or a stderr line `ralph: auth-failed <message>`: authentication failed;
  every worker stops (exit 10) and no attempt is counted;
- a stderr line `ralph: network-down [<message>]`: no network; every worker pauses with backoff.

Claude-shaped stream-json lines (`{"type": "result", ...}`) on stdout are read like claude's, so
a wrapper around claude keeps its cost and its structured auth/limit events.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from ralph.agents.base import Agent, AgentSignal, StreamParser
from ralph.agents.claude import ClaudeParser
from ralph.agents.registry import register
from ralph.errors import ConfigError

PROMPT = "{prompt}"
PROMPT_FILE = "{prompt_file}"
EX_TEMPFAIL = 75
EX_NOPERM = 77
PROTOCOL_RE = re.compile(
    r"^ralph:\s*(?P<kind>rate-limited|auth-failed|network-down)\b\s*(?P<rest>.*)$"
)
UNTIL_RE = re.compile(r"^until\s+(?P<when>\S+)")
RETRY_RE = re.compile(r"^retry-after\s+(?P<seconds>\d+(?:\.\d+)?)")


class CommandParser(ClaudeParser):
    """claude-shaped JSON events from stdout, the `ralph:` protocol lines from stderr; no free
    text is ever matched (a command's stderr may be test output about 401s)."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: dict[str, str] = {}  # kind -> the rest of its last `ralph:` line

    def feed(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        if stream == "stderr":
            if m := PROTOCOL_RE.match(line.strip()):
                self.protocol[m["kind"]] = m["rest"].strip()
            return []
        if line.lstrip().startswith("{") and '"type"' in line:
            return super().feed(line, stream)
        return []

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        return super().event(event) if "type" in event else []

    def failure_signal(self, exit_code: int | None) -> AgentSignal | None:
        said = self.protocol
        if "auth-failed" in said or exit_code == EX_NOPERM:
            text = said.get("auth-failed") or f"the agent command exited {exit_code} (EX_NOPERM)"
            return self.signal("auth_failed", text)
        if "rate-limited" in said or exit_code == EX_TEMPFAIL:
            retry_after, reset_at = _when(said.get("rate-limited", ""))
            return self.signal(
                "rate_limited",
                f"the agent command is rate-limited {said.get('rate-limited', '')}".strip(),
                retry_after=retry_after,
                reset_at=reset_at,
            )
        if "network-down" in said:
            return self.signal("network_down", said["network-down"] or "the network is down")
        return None


def _when(rest: str) -> tuple[float | None, float | None]:
    """(retry_after, reset_at) from `until <ISO or epoch>` / `retry-after <seconds>`."""
    if m := RETRY_RE.match(rest):
        return float(m["seconds"]), None
    if m := UNTIL_RE.match(rest):
        when = m["when"]
        try:
            return None, float(when)
        except ValueError:
            pass
        try:
            stamp = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            return None, None
        return None, (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()
    return None, None


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
    auth_fix = "check the credentials your agent command uses"
    cost_source = "reported"  # only when it prints a claude-shaped result line

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
        return self.configure(CommandParser())
