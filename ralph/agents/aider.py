"""aider: one message from a file, auto-confirm, and no commits of its own (ralph commits)."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from ralph.agents.base import Agent, AgentSignal, Credentials, StreamParser
from ralph.agents.registry import register
from ralph.agents.text import TextParser, classify_lines

# "Tokens: 12k sent, 345 received. Cost: $0.04 message, $0.10 session."
TOKENS_RE = re.compile(r"Tokens: ([\d.]+)(k?) sent, ([\d.]+)(k?) received")
COST_RE = re.compile(r"Cost: \$([\d.]+) message, \$([\d.]+) session")
# aider prints a failed API call as litellm's exception, its own explanation of it, and (for
# errors it retries) "Retrying in 0.2 seconds..."; it wraps long lines even with --no-pretty.
ERROR_START_RE = re.compile(
    r"^(?:litellm\.\w+(?:Error|Exception)\b|The API provider (?:is not able to authenticate"
    r"|has rate limited you))"
)
ERROR_TAIL = 3  # lines after an error's first line that may hold its wrapped end
# recorded (aider 0.86.2, no key): onboarding offers an OpenRouter login, which --yes-always
# accepts, then waits up to 5 minutes for a browser.
LOGIN_LINES = (
    "No LLM model was specified and no API keys were provided",
    "Login to OpenRouter or create a free account",
    "Please open this URL in your browser to connect Aider with OpenRouter",
    "Waiting up to 5 minutes for you to finish in the browser",
)


class AiderParser(TextParser):
    """aider's token and cost lines, its login prompt (at once), and its API error lines.

    aider exits 0 even when its API call failed, and prints the model's prose on the same
    stdout, so only aider's own error lines (anchored at the start of a line) count: they mark
    the run as an error, and `final_signal` classifies them with the lines wrapped after them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.errors: deque[str] = deque(maxlen=40)
        self.error_tail = 0

    def feed(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        text = line.strip()
        if m := TOKENS_RE.search(line):
            report = self.report
            report.input_tokens = (report.input_tokens or 0) + _count(m[1], m[2])
            report.output_tokens = (report.output_tokens or 0) + _count(m[3], m[4])
            report.num_turns = (report.num_turns or 0) + 1
            # a call went through: errors before it were retried away
            report.is_error, self.error_tail = False, 0
            self.errors.clear()
        if m := COST_RE.search(line):
            self.report.cost_usd = float(m[2])  # the session total so far
        if text.startswith(LOGIN_LINES):
            return self.once(self.signal("auth_failed", f"aider: {text}"))
        if ERROR_START_RE.match(text):
            self.report.is_error = True
            self.errors.append(text)
            self.error_tail = ERROR_TAIL
        elif self.error_tail and text:
            self.errors.append(text)
            self.error_tail -= 1
        return []

    def failure_signal(self, exit_code: int | None) -> AgentSignal | None:
        # Only aider's own error lines: its stderr holds Python tracebacks, whose text may be
        # anything the task was about ("the test expected 401 Unauthorized"). Each line is read
        # joined with the next too: aider wraps "... OpenAIException - Connection" / "error.".
        lines = list(self.errors)
        joined = [" ".join(lines[i : i + 2]) for i in range(len(lines))]
        return self.with_fix(classify_lines(lines) or classify_lines(joined))


def _count(number: str, k: str) -> int:
    return int(float(number) * (1000 if k else 1))


@register
class Aider(Agent):
    """`aider --message-file=<prompt.md> --yes-always --no-auto-commits --no-dirty-commits ...`.

    The prompt goes in a file by default: long prompts stay out of argv and never read as flags.
    Set `model` and that model's key (e.g. ANTHROPIC_API_KEY): without them aider offers an
    OpenRouter browser login, which ralph treats as an auth failure.
    """

    name = "aider"
    executable = "aider"
    prompt_mode = "file"
    install_hint = "python -m pip install aider-install && aider-install"
    auth_fix = "set `model` under [agents.aider] and that provider's key (e.g. ANTHROPIC_API_KEY)"
    cost_source = "reported"
    tested_versions = ("0.86.",)
    setup = ("set model below and that provider's key (else aider waits for a browser login)",)
    api_hosts = ("api.anthropic.com", "api.openai.com", "openrouter.ai")
    base_url_vars = ("ANTHROPIC_BASE_URL", "OPENAI_API_BASE", "OPENAI_BASE_URL")
    env_prefixes = ("AIDER_", "ANTHROPIC_", "OPENAI_", "OPENROUTER_", "GEMINI_", "DEEPSEEK_")
    home_paths = (".aider",)
    scratch = (".aider.tags.cache.v*",)  # its repo map's cache: always in the repository's root

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        argv = [
            *self.command,
            "--yes-always",
            "--no-auto-commits",
            "--no-dirty-commits",
            "--no-check-update",
            "--no-pretty",
            "--no-gitignore",  # else it adds .aider* to .gitignore, inside the task's commit
            "--no-show-model-warnings",  # else --yes-always opens a browser on the docs
            "--analytics-disable",
            # its history files (prompt and argv included) go to the attempt's run folder, not
            # into the workspace and from there into the task's commit
            f"--chat-history-file={prompt_file.parent / 'aider.chat.history.md'}",
            f"--input-history-file={prompt_file.parent / 'aider.input.history'}",
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

    def credentials(self, env: Mapping[str, str], home: Path) -> Credentials:
        keys = sorted(var for var in env if var.endswith("_API_KEY") and env[var])
        if not self.model and not keys:
            return False, "no model and no API key: aider would wait for a browser login"
        if keys:
            return True, ", ".join(keys) + " set"
        return None, "no *_API_KEY variable (aider may read one from .env)"

    def new_parser(self) -> StreamParser:
        return self.configure(AiderParser())
