"""OpenAI Codex CLI (`codex exec --json`): prompt on stdin via `-`, JSONL events on stdout."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ralph.agents.base import Agent, AgentSignal, Credentials, StreamParser
from ralph.agents.jsonl import JsonLinesParser, count, plus
from ralph.agents.registry import register
from ralph.agents.text import classify_text
from ralph.sandbox.policy import url_host_port

# recorded (0.171.0): a custom provider whose env_key variable is unset
MISSING_KEY_RE = re.compile(r"Missing environment variable: `(?P<var>[^`]+)`")


class CodexParser(JsonLinesParser):
    """Reads `codex exec --json` events (thread.started, item.*, turn.completed/failed, error).

    codex retries API errors five times, printing each as an `error` event:
    `Reconnecting... 1/5 (unexpected status 401 Unauthorized: ...)`, and with no network
    `Reconnecting... waiting for network (Connection failed: error sending request)` for
    minutes; the first one signals. Command output (`command_execution` items) is never read.
    """

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        kind = event.get("type")
        if kind == "thread.started" and event.get("thread_id"):
            self.report.session_id = str(event["thread_id"])
        elif kind == "turn.completed":
            self._usage(event.get("usage"))
        elif kind == "item.completed":
            self._item(event.get("item"))
        elif kind == "error":
            return [self._error(str(event.get("message") or ""))]
        elif kind == "turn.failed":
            self.report.is_error = True
            error = event.get("error")
            message = str(error.get("message") if isinstance(error, dict) else error or "")
            self.report.result_text = message or self.report.result_text
            return [self._error(message)]
        return []

    def _error(self, message: str) -> AgentSignal | None:
        if m := MISSING_KEY_RE.search(message):
            return AgentSignal(
                "auth_failed",
                f"codex: {message}",
                fix=f"set {m['var']} (the env_key of the codex model provider) or run "
                "`codex login`",
            )
        return classify_text(message)

    def _usage(self, usage: object) -> None:
        self.report.num_turns = (self.report.num_turns or 0) + 1
        if not isinstance(usage, dict):
            return
        # cached_input_tokens is the cached part of input_tokens, not extra input.
        report = self.report
        report.input_tokens = plus(report.input_tokens, count(usage.get("input_tokens")))
        report.output_tokens = plus(report.output_tokens, count(usage.get("output_tokens")))

    def _item(self, item: object) -> None:
        if not isinstance(item, dict):
            return
        if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
            self.report.result_text = item["text"]
        elif item.get("type") == "file_change":
            for change in item.get("changes") or []:
                if isinstance(change, dict) and change.get("kind") != "delete":
                    self.add_path(change.get("path"))


@register
class Codex(Agent):
    """`codex exec --json --skip-git-repo-check --sandbox workspace-write -` (prompt on stdin)."""

    name = "codex"
    executable = "codex"
    prompt_mode = "stdin"
    install_hint = "npm install -g @openai/codex, then `codex login`"
    auth_fix = "run `codex login`, or set the env_key variable of your codex model provider"
    cost_source = "estimated"
    tested_versions = ("0.171.",)
    setup = (
        "run `codex login`, or use a provider of your own with its key in a variable:",
        'args = ["-c", "model_provider=p", "-c", \'model_providers.p.name="p"\',',
        '  "-c", \'model_providers.p.base_url="https://llm.example.com/v1"\',',
        '  "-c", "model_providers.p.env_key=P_API_KEY",',
        '  "-c", \'model_providers.p.wire_api="responses"\']',
    )

    api_hosts = ("api.openai.com", "chatgpt.com", "auth.openai.com")
    base_url_vars = ("OPENAI_BASE_URL",)
    env_prefixes = ("OPENAI_", "CODEX_")
    home_paths = (".codex",)

    def sandbox_hosts(self, env: Mapping[str, str]) -> list[str]:
        """Its own hosts plus the base_url of a provider given in its `-c` overrides."""

        hosts = super().sandbox_hosts(env)
        provider = _override(self.args, "model_provider")
        url = _override(self.args, f"model_providers.{provider}.base_url") if provider else None
        found = url_host_port(url) if url else None
        return [*hosts, found] if found else hosts

    def in_sandbox(self, argv: list[str]) -> list[str]:
        """Under ralph's bwrap, codex's own `--sandbox workspace-write` cannot set itself up
        (no nested namespaces, no capabilities): its commands failed and the model was told so.
        ralph's sandbox is the outer one and confines it the same way, so codex runs with
        `danger-full-access` inside it."""
        out = list(argv)
        for i in range(len(out) - 1):
            if out[i] == "--sandbox" and out[i + 1] == "workspace-write":
                out[i + 1] = "danger-full-access"
                break
        return out

    def sandbox_env_names(self) -> list[str]:
        """A custom provider's key variable (`model_providers.<p>.env_key`)."""
        provider = _override(self.args, "model_provider")
        var = _override(self.args, f"model_providers.{provider}.env_key") if provider else None
        return [var] if var else []

    def argv(self, prompt: str, prompt_file: Path) -> list[str]:
        # workspace-write lets it edit the checkout but not .git, which suits ralph committing.
        argv = [
            *self.command,
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--sandbox",
            "workspace-write",
        ]
        return self.positional(argv, prompt, prompt_file, stdin=("-",))

    def credentials(self, env: Mapping[str, str], home: Path) -> Credentials:
        provider = _override(self.args, "model_provider")
        if provider:
            var = _override(self.args, f"model_providers.{provider}.env_key")
            if var:
                return (True, f"{var} is set") if env.get(var) else (False, f"{var} is not set")
            return None, f"provider {provider!r}: its env_key is not in [agents.codex] args"
        for var in ("CODEX_API_KEY", "OPENAI_API_KEY"):
            if env.get(var):
                return True, f"{var} is set"
        try:  # answers offline, from codex's own auth file
            out = subprocess.run(
                [self.command[0], "login", "status"],
                capture_output=True,
                text=True,
                timeout=15,
                stdin=subprocess.DEVNULL,
                env=dict(env),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"`codex login status` failed: {exc}"
        lines = [ln.strip() for ln in (out.stdout + "\n" + out.stderr).splitlines() if ln.strip()]
        said = lines[-1][:200] if lines else f"exit {out.returncode}"
        return out.returncode == 0, f"`codex login status`: {said}"

    def new_parser(self) -> StreamParser:
        return self.configure(CodexParser())


def _override(args: Sequence[str], key: str) -> str | None:
    """The value of a `-c key=value` override in codex args (quotes stripped), or None."""
    value = None
    for i, arg in enumerate(args):
        text = arg[2:] if arg.startswith("-c") and len(arg) > 2 else None
        if arg in ("-c", "--config") and i + 1 < len(args):
            text = args[i + 1]
        if text and text.strip().startswith(key + "="):
            value = text.split("=", 1)[1].strip().strip("\"'")
    return value
