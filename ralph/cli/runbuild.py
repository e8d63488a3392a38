"""What `ralph run` checks and builds before anything runs: durations, the agents (with the
fallback list), the conflict policy, the sandbox, the templates; `build` raises before any
change, so bad input costs one line and changes nothing."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ralph.cli.common import session
from ralph.cli.runopts import Flags
from ralph.durations import parse_duration
from ralph.errors import ConfigError, UsageError
from ralph.hostid import host_names
from ralph.notify import Notifier, resolve
from ralph.store import ensure_ralph_dir, project_root
from ralph.store.backup import backup

if TYPE_CHECKING:
    from ralph.agents.base import Agent
    from ralph.config import Settings


def _duration(value: str | None, default: float | None, what: str) -> float | None:
    if value is None:
        return default
    if value.strip().lower() in ("0", "none", "off") and what != "--lease":
        return None
    return parse_duration(value, what=what)


def resolve_agent(settings: Settings, flags: Flags, check: bool = True) -> tuple[Agent, str]:
    """The agent adapter to launch, its binary checked (unless `check` is False, for
    --dry-run: then a missing binary is only reported); ConfigError names what is wrong."""
    from ralph.config import PROMPT_MODES  # lazy: start-up

    if flags.prompt_mode is not None and flags.prompt_mode not in PROMPT_MODES:
        raise UsageError(
            f"invalid --prompt-mode {flags.prompt_mode!r}", hint="use stdin, arg or file"
        )
    if flags.agent_cmd is not None and flags.agent is not None:
        raise UsageError("use either --agent or --agent-cmd, not both")
    if flags.agent_cmd is not None:
        try:
            argv = shlex.split(flags.agent_cmd)
        except ValueError as exc:
            raise UsageError(f"cannot split --agent-cmd {flags.agent_cmd!r}: {exc}") from exc
        if not argv:
            raise UsageError("--agent-cmd is empty")
        name, spec = "command", {"command": argv, "prompt_mode": flags.prompt_mode or "stdin"}
    else:
        name = flags.agent or settings.agent
        spec = settings.agent_settings(name)
        if flags.prompt_mode:
            spec["prompt_mode"] = flags.prompt_mode
    agent = _make_agent(name, spec)
    agent.prices = settings.prices
    if check:
        agent.check_installed()
    else:
        try:
            agent.check_installed()
        except ConfigError as exc:
            typer.echo(f"note: {exc.line()}; --dry-run shows what would run", err=True)
    return agent, name


def _make_agent(name: str, spec: dict[str, Any]) -> Agent:
    """From the registry; a name it does not know but the config gives a command runs as that
    command (with the `command` adapter)."""
    try:
        from ralph.agents.registry import configured_agent  # lazy: start-up
    except ModuleNotFoundError as exc:  # a trimmed install without the adapters
        if exc.name != "ralph.agents.registry" or not spec.get("command"):
            raise
        from ralph.agents.base import Agent  # lazy: start-up

        return Agent(command=spec["command"], prompt_mode=spec.get("prompt_mode"))
    return configured_agent(name, spec)


def _check_pr_mode(flags: Flags, settings: Any, root: Path) -> None:
    """Pull request mode needs a remote to push to, gh, and the GitHub repository."""
    import shutil

    from ralph.errors import GitHubError
    from ralph.review.pulls import github_repo

    if not flags.remote:
        raise UsageError(
            "pull request mode pushes each task's branch to a remote", hint="add --remote origin"
        )
    if flags.push_branches:
        raise UsageError("--push-branches and pull request mode both push; choose one")
    if shutil.which("gh") is None:
        raise GitHubError(
            "pull request mode needs the GitHub CLI `gh`",
            hint="install it (Debian/Ubuntu: apt install gh), then run `gh auth login`",
        )
    github_repo(root, flags.remote, settings.land.repo)  # a remote that names no repo fails now


def build(flags: Flags) -> tuple[Any, Any, Any, Any]:
    """Check everything and build (store, workspace, options, control); raises before any change."""
    from ralph.config import load_settings  # lazy: start-up
    from ralph.control import RunControl  # lazy: start-up
    from ralph.options import RunOptions  # lazy: start-up
    from ralph.prompts import load_commit_message, load_prompt, sample_context  # lazy: start-up
    from ralph.workspace.git import repo_root  # lazy: start-up

    lease = _duration(flags.lease, None, "--lease")
    max_time = _duration(flags.max_time, None, "--max-time")
    task_timeout = _duration(flags.task_timeout, -1.0, "--task-timeout")
    idle_timeout = _duration(flags.idle_timeout, -1.0, "--idle-timeout")
    grace = _duration(flags.grace, None, "--grace")
    root = repo_root(Path.cwd())
    settings = load_settings(project_root(root), flags.config)
    # host-tag-pid: hosts (containers) sharing a hostname, and pid 1 in each, never collide
    worker = flags.worker or settings.worker or f"{host_names([str(os.getpid())], root)[0]}"
    flags.remote = flags.remote or settings.remote
    if flags.push_branches and not flags.remote:
        raise UsageError("--push-branches needs a remote", hint="add --remote origin")
    if flags.land is not None:
        from ralph.review import parse_land

        settings.land = parse_land({"mode": flags.land}, "--land")
    if settings.land.pr:  # a pull request per task: its branch goes to the remote
        _check_pr_mode(flags, settings, root)
    elif settings.land.review and (flags.remote or flags.push_branches):
        raise UsageError(
            "review mode keeps each task's commit on a local review branch; it does not push",
            hint='drop --remote/--push-branches, or use [land] mode = "target" or "pr"',
        )
    members = _agents(settings, flags, root)  # the fallback list (ralph.fallback), checked
    first = next((m for m in members if m.auth_error is None), members[0])
    agent, agent_name, sandbox = first.agent, first.name, first.sandbox
    prompt = load_prompt(root, flags.prompt, settings.prompt)
    commit_message = load_commit_message(settings.commit_message)
    sample = sample_context(root, worker, agent_name, settings.vars)
    prompt.render(sample)
    commit_message.render({**sample, "cost": "$0.0000", "cost_usd": 0.0})
    merging = _merge_options(settings, flags, root, worker, agent_name)
    verify = settings.verify
    if flags.verify:
        from ralph.config import _argv  # lazy: start-up

        verify = [_argv(v, "--verify") for v in flags.verify]
    caps = (
        [c.strip() for c in flags.capabilities.split(",") if c.strip()]
        if flags.capabilities is not None
        else settings.capabilities
    )
    options = RunOptions(
        agent=agent,
        agent_name=agent_name,
        worker=worker,
        prompt=prompt,
        commit_message=commit_message,
        capabilities=caps,
        lease=lease or settings.lease,
        max_attempts=flags.max_attempts or settings.max_attempts,
        max_conflicts=settings.max_conflicts,
        task_timeout=settings.task_timeout if task_timeout == -1.0 else task_timeout,
        idle_timeout=settings.idle_timeout if idle_timeout == -1.0 else idle_timeout,
        grace=settings.grace if grace is None else grace,
        kill_grace=settings.kill_grace,
        backoff=settings.backoff,
        backoff_max=settings.backoff_max,
        rate_limit_pause=settings.rate_limit_pause,
        breaker=settings.breaker,
        no_changes=settings.no_changes,
        verify=verify,
        variables=settings.vars,
        once=flags.once,
        watch=flags.watch,
        poll=settings.poll,
        max_tasks=flags.max_tasks,
        max_cost=flags.max_cost,
        max_time=max_time,
        settings=settings,
        sandbox=sandbox,
        **merging,
    )
    store = session.store()
    store.max_expiries = settings.max_expiries
    if not flags.dry_run and getattr(store, "path", None):  # SQLite: a copy per run, newest 5
        backup(store.path)
    ensure_ralph_dir(root)
    log = (lambda line: None) if flags.quiet else None
    control = RunControl(
        max_tasks=flags.max_tasks, max_cost=flags.max_cost, max_time=max_time, log=log
    )
    _notifications(store, settings, control)
    if not flags.dry_run:
        from ralph.fallback import AgentPool

        control.pool = AgentPool(
            members,
            fallback_after=settings.run.fallback_after,
            factory=lambda name: _member(settings, flags, root, name),
            record=store.note_event,
            log=lambda line: control.log(line),
        )
    return store, root, options, control


def _merge_options(
    settings: Settings, flags: Flags, root: Path, worker: str, agent_name: str
) -> dict[str, Any]:
    """The conflict policy's RunOptions fields (`--resolve`, `[merge]`), checked: the
    resolution template renders and `[merge] agent` is a configured, installed agent."""
    from ralph.config import RESOLVE_MODES
    from ralph.resolve import load_prompt, sample_context

    mode = flags.resolve or settings.merge.resolve
    if mode not in RESOLVE_MODES:
        raise UsageError(f"invalid --resolve {mode!r}", hint="use agent or rerun")
    found: dict[str, Any] = {"resolve": mode}
    if mode != "agent":
        return found
    name = settings.merge.agent
    if name and name != agent_name:
        merge_agent = _make_agent(name, settings.agent_settings(name))
        merge_agent.prices = settings.prices
        if not flags.dry_run:
            merge_agent.check_installed()
        found.update(merge_agent=merge_agent, merge_agent_name=name)
    template = load_prompt(root, settings.merge.prompt)
    template.render(sample_context(root, worker, name or agent_name))
    found["resolve_prompt"] = template
    return found


def _agents(settings: Settings, flags: Flags, root: Path) -> list[Any]:
    """The run's agents in order (`--agent a,b`, `[run] agents`, or one), each installed and
    preflighted; missing credentials stop the run only when no agent has any (exit 10)."""
    from ralph.fallback import agent_list

    if flags.agent_cmd is not None:
        return [_member(settings, flags, root, None)]
    if flags.agent is not None:
        names = agent_list(flags.agent, "--agent")
    else:
        names = settings.run.agents or agent_list(settings.agent, "agent")
    members = [_member(settings, flags, root, name) for name in names]
    if all(m.auth_error is not None for m in members):
        raise members[0].auth_error
    return members


def _member(settings: Settings, flags: Flags, root: Path, name: str | None) -> Any:
    """One agent of the run (`name` None: --agent-cmd's); missing credentials are noted on it
    (raised for --agent-cmd's)."""
    import dataclasses

    from ralph.errors import AgentAuthError
    from ralph.fallback import Member, max_cost_of

    chosen = flags if name is None else dataclasses.replace(flags, agent=name, agent_cmd=None)
    agent, agent_name = resolve_agent(settings, chosen, check=not flags.dry_run)
    member = Member(
        agent_name, agent, None, max_cost_of(settings.agent_settings(agent_name), agent_name)
    )
    if flags.dry_run:
        return member
    from ralph.doctor import preflight
    from ralph.sandbox.confine import Sandbox

    try:
        preflight(agent, root)
    except AgentAuthError as exc:
        if name is None:
            raise
        member.auth_error = exc
    ours = [settings.progress, settings.prd]  # files ralph writes in the workspace
    member.sandbox = Sandbox.resolve(flags.sandbox, settings.sandbox, agent, root, ours)
    return member


def _notifications(store: Any, settings: Settings, control: Any) -> None:
    """[notify] / RALPH_NOTIFY_URLS: a Notifier on the run's control (ralph.notify)."""

    found = resolve(settings.notify, settings.source or "ralph.toml")
    if found.urls:
        control.notifier = Notifier(
            found, record=store.note_event, log=lambda line: control.log(line)
        )
