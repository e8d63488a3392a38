"""`ralph doctor` and the preflight of `ralph run`: what can be checked cheaply before a claim.

Each check answers offline and in well under a second or two: the agent's binary and version
(against the versions its adapter was tested with), its credentials where the CLI keeps them
somewhere ralph can look (`codex login status`, gemini's settings and variables, amp's key,
claude's key or login files), whether the sandbox works and its policy, git's identity, a clean
tree, and the store.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ralph.agents.base import Agent
from ralph.agents.registry import configured_agent
from ralph.errors import AgentAuthError, ConfigError, RalphError, SandboxUnavailableError
from ralph.pricing import price_of
from ralph.sandbox.policy import wanted
from ralph.store import open_store, resolve_url
from ralph.store.backup import quick_check, restore_hint


@dataclass
class Check:
    """One line of the checklist; `fix` says what to do when `ok` is False.

    `fatal` failures stop `ralph run` before it claims anything; the others only warn.
    """

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    fatal: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_checks(
    agent_name: str | None, repo: Path, store_url: str | None, settings: Any = None
) -> list[Check]:
    """Every check, in the order a newcomer should fix them."""
    from ralph.config import Settings  # lazy: start-up (~5 ms `ralph run`'s preflight skips)

    settings = settings or Settings()
    checks: list[Check] = []
    from ralph.fallback import agent_list

    if agent_name:  # every agent of a fallback list (ralph.fallback), in order
        names = agent_list(agent_name, "--agent")
    else:
        names = settings.run.agents or agent_list(settings.agent, "agent")
    first: Agent | None = None
    for name in names:
        try:
            agent = configured_agent(name, settings.agent_settings(name))
        except RalphError as exc:
            checks.append(Check(f"agent {name}", False, exc.message, exc.hint, fatal=True))
            continue
        agent.prices = settings.prices
        checks += agent_checks(agent, name, version=True)
        checks += cost_check(agent, name)
        first = first or agent
    checks += [sandbox_check(first, settings, repo)]
    checks += [git_identity(repo), clean_tree(repo), store_check(store_url)]
    return checks


def sandbox_check(agent: Agent | None, settings: Any, repo: Path) -> Check:
    """Whether attempts will run sandboxed, and under which policy (ralph/sandbox)."""
    from ralph.sandbox.confine import REFUSAL_HINT, Sandbox  # lazy: start-up

    on, _ = wanted(None, settings.sandbox)
    if not on:
        return Check("sandbox", True, "off: agents run unconfined (unsandboxed)")
    if agent is None:
        return Check("sandbox", True, "on (no agent to check its policy for)")
    try:
        sandbox = Sandbox.resolve(None, settings.sandbox, agent, repo)
    except SandboxUnavailableError as exc:
        return Check("sandbox", False, exc.message, REFUSAL_HINT, fatal=True)
    assert sandbox is not None
    hosts = f": {', '.join(sandbox.hosts)}" if sandbox.network == "allow" else ""
    policy = sandbox.describe().removeprefix("sandbox: ")
    return Check("sandbox", True, f"{policy}{hosts} ({sandbox.exe})")


def agent_checks(agent: Agent, name: str, *, version: bool) -> list[Check]:
    """The binary, its version (if asked) and its credentials."""
    try:
        path = agent.check_installed()
    except ConfigError as exc:
        return [Check(f"{name} installed", False, exc.message, exc.hint, fatal=True)]
    checks = [Check(f"{name} installed", True, path)]
    if version and agent.tested_versions and agent.uses_own_binary():
        found = agent.version()
        tested = ", ".join(v.rstrip(".") + ".x" for v in agent.tested_versions)
        good = found is not None and found.startswith(agent.tested_versions)
        checks.append(
            Check(
                f"{name} version",
                good,
                f"{found or 'unknown'} (tested: {tested})",
                None if good else f"install a tested version ({agent.install_hint})",
            )
        )
    checks.append(credentials_check(agent, name))
    return checks


def credentials_check(agent: Agent, name: str, env: Mapping[str, str] | None = None) -> Check:
    """The agent's credentials as its CLI will see them (a wrapper command is not checked)."""
    if not agent.uses_own_binary():
        return Check(f"{name} credentials", True, "custom command: not checked")
    env = {**os.environ, **agent.env(), **(env or {})}
    home = Path(env.get("HOME") or Path.home())
    ok, detail = agent.credentials(env, home)
    if ok is None:
        return Check(f"{name} credentials", True, detail)
    return Check(f"{name} credentials", ok, detail, None if ok else agent.auth_fix, fatal=True)


def cost_check(agent: Agent, name: str) -> list[Check]:
    """For a CLI that reports tokens only: is there a price for its model (else no cost, and
    --max-cost cannot count it)? Gemini without a model names its models as it runs."""
    if agent.cost_source != "estimated":
        return []

    if not agent.model and agent.name == "gemini":
        return [Check(f"{name} cost", True, "gemini picks its models as it runs; a model "
                      "without a price shows no cost and --max-cost cannot count it")]  # fmt: skip
    if not agent.model:
        return [Check(f"{name} cost", False, "no model set: its cost cannot be estimated",
                      f"set model under [agents.{name}]")]  # fmt: skip
    price = price_of(agent.model, agent.prices)
    if price is None:
        return [Check(f"{name} cost", False, f"no price for {agent.model!r}",
                      f'add [prices."{agent.model}"] input = .. output = .. (USD per million '
                      "tokens) to ralph.toml")]  # fmt: skip
    return [Check(f"{name} cost", True, f"estimated at ${price[0]:g} / ${price[1]:g} per M tokens")]


def git_identity(repo: Path) -> Check:
    """Who the task commits are by; ralph falls back to ralph <ralph@localhost>."""
    email = os.environ.get("GIT_AUTHOR_EMAIL") or _git(repo, "config", "user.email")
    if email:
        return Check("git identity", True, email)
    return Check(
        "git identity",
        False,
        "no user.email: commits would be by ralph <ralph@localhost>",
        'git config user.name "Your Name" && git config user.email you@example.com',
    )


def clean_tree(repo: Path) -> Check:
    """Uncommitted changes outside .ralph/ would make `ralph run` refuse to start."""
    out = _git(repo, "status", "--porcelain", "--", ".", ":(exclude).ralph")
    if out is None:
        return Check("git repository", False, f"{repo} is not a git repository", "git init")
    if not out:
        return Check("clean tree", True, "no uncommitted changes")
    count = len(out.splitlines())
    return Check(
        "clean tree",
        False,
        f"{count} uncommitted change{'s' * (count != 1)}",
        "commit or stash them, or run with --allow-dirty",
    )


def store_check(store_url: str | None) -> Check:
    """The task store opens (a SQLite file that does not exist yet is created on first use)."""

    target = resolve_url(store_url)
    if "://" not in target and not Path(target).exists():
        return Check("task store", True, f"{target} (created on first use)")
    try:
        store = open_store(target)
    except RalphError as exc:
        return Check("task store", False, exc.message, exc.hint or "check --db / RALPH_DB", True)
    store.close()
    path = getattr(store, "path", None)
    if path is not None:  # SQLite: pages are read lazily, so a damaged one only shows here
        problems = quick_check(path)
        if problems:
            detail = f"{target} is corrupted (quick_check: {problems[0]})"
            return Check("task store", False, detail, restore_hint(path), True)
        return Check("task store", True, f"{target} (quick_check ok)")
    return Check("task store", True, _redact(target))


def preflight(agent: Agent, repo: Path, env: Mapping[str, str] | None = None) -> None:
    """Raise the first fatal problem before `ralph run` claims a task: a missing binary
    (ConfigError) or missing credentials (AgentAuthError, exit 10)."""
    agent.check_installed()
    check = credentials_check(agent, agent.name or "agent", env)
    if not check.ok:
        raise AgentAuthError(f"{check.name}: {check.detail}", hint=check.fix)


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _redact(url: str) -> str:
    """A store URL without its password."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    return url


__all__ = ["Check", "preflight", "run_checks"]
