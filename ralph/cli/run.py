"""`ralph run`, `ralph worker start` and `ralph demo`: the loop's command line.

Everything is checked before anything runs (config, durations, the git tree, the template, the
agent binary), so bad input costs one line on stderr and changes nothing. gitpython, jinja2 and
the loop are imported inside the commands, keeping the hot store commands fast.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ralph.cli.common import emit_json, session
from ralph.durations import parse_duration
from ralph.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from ralph.agents.base import Agent
    from ralph.config import Settings
    from ralph.control import RunSummary

_DEMO_AGENT = Path(__file__).resolve().parents[1] / "demo_agent.py"  # in the package
_DEMO_NAMES = ("Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta")


@dataclass
class Flags:
    """The command-line values of `run` / `worker start`; None means "from config"."""

    agent: str | None = None
    agent_cmd: str | None = None
    prompt_mode: str | None = None
    prompt: str | None = None
    config: Path | None = None
    worker: str | None = None
    capabilities: str | None = None
    lease: str | None = None
    max_tasks: int | None = None
    max_cost: float | None = None
    max_time: str | None = None
    task_timeout: str | None = None
    idle_timeout: str | None = None
    grace: str | None = None
    max_attempts: int | None = None
    verify: list[str] = field(default_factory=list)
    once: bool = False
    watch: bool = False
    dry_run: bool = False
    allow_dirty: bool = False
    as_json: bool = False
    quiet: bool = False
    workers: int = 1
    names: str | None = None
    no_live: bool = False
    worktree: bool = False
    remote: str | None = None
    target: str | None = None
    push_branches: bool = False
    sandbox: bool | None = None


def _agent_help() -> str:
    """--agent's help, naming installed plugin agents too when help is shown (looking them up
    would cost every other command its time)."""
    names = "claude, codex, gemini, aider, opencode, amp, cursor, qwen, copilot, command"
    if {"--help", "-h"} & set(sys.argv):
        try:
            from ralph.agents.registry import plugin_agents

            names += "".join(f", {n}" for n in plugin_agents())
        except Exception:  # noqa: BLE001 - a broken plugin must not break --help
            pass
    return (
        f"Agent from the registry or ralph.toml ({names}, demo: offline). [default: config, claude]"
    )


AgentOpt = Annotated[
    str | None,
    typer.Option(
        "--agent",
        "-a",
        metavar="NAME",
        help=_agent_help(),
    ),
]
AgentCmdOpt = Annotated[
    str | None,
    typer.Option(
        "--agent-cmd",
        metavar="CMD",
        help="Any agent command, split like a shell would (never run by one); gets the prompt on "
        "stdin unless --prompt-mode says otherwise.",
    ),
]
PromptModeOpt = Annotated[
    str | None,
    typer.Option(
        "--prompt-mode", metavar="stdin|arg|file", help="How --agent-cmd gets the prompt."
    ),
]
PromptOpt = Annotated[
    str | None,
    typer.Option(
        "--prompt",
        metavar="FILE",
        help="Prompt template (jinja2). [default: config, prompts/task.md.j2, built-in]",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="Config file. [default: ralph.toml or pyproject.toml [tool.ralph]]",
    ),
]
CapsOpt = Annotated[
    str | None,
    typer.Option("--capabilities", "-c", metavar="A,B", help="Capabilities this worker offers."),
]
LeaseOpt = Annotated[
    str | None,
    typer.Option(
        "--lease", metavar="DURATION", help="Claim lease, renewed every third of it. [default: 30m]"
    ),
]
MaxTasksOpt = Annotated[int | None, typer.Option("--max-tasks", min=1, help="Stop after N tasks.")]
MaxCostOpt = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        metavar="USD",
        min=0,
        help="Take no new task once the agents report this spend.",
    ),
]
MaxTimeOpt = Annotated[
    str | None,
    typer.Option("--max-time", metavar="DURATION", help="Take no new task after this long."),
]
TaskTimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--task-timeout", metavar="DURATION", help="Kill an agent running longer. [default: 60m]"
    ),
]
IdleTimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--idle-timeout", metavar="DURATION", help="Kill an agent silent this long. [default: 15m]"
    ),
]
GraceOpt = Annotated[
    str | None,
    typer.Option(
        "--grace",
        metavar="DURATION",
        help="On SIGTERM/SIGINT, how long a running agent may finish. [default: 30s]",
    ),
]
MaxAttemptsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-attempts", min=1, help="Attempts before a task is marked failed. [default: 3]"
    ),
]
VerifyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--verify", metavar="CMD", help="Command that must pass after the agent (repeatable)."
    ),
]
OnceOpt = Annotated[bool, typer.Option("--once", help="Run one task, then exit.")]
WatchOpt = Annotated[
    bool,
    typer.Option("--watch", help="Wait for new tasks instead of exiting when the queue is empty."),
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Print each ready task's argv and prompt; claim and launch nothing."
    ),
]
AllowDirtyOpt = Annotated[
    bool,
    typer.Option(
        "--allow-dirty", help="Start on a working tree with uncommitted changes (left untouched)."
    ),
]
SandboxOpt = Annotated[
    bool | None,
    typer.Option(
        "--sandbox/--no-sandbox",
        help="Run each attempt in a bubblewrap sandbox confined to its workspace. "
        "[default: on where it works; RALPH_SANDBOX=on|off, [sandbox] enabled]",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")]
WorkersOpt = Annotated[
    int,
    typer.Option(
        "--workers",
        "-w",
        "-j",
        min=1,
        help="Workers in parallel, each in its own git worktree "
        "(.ralph/worktrees/<name>), merged into the current branch one at a time.",
    ),
]
NamesOpt = Annotated[
    str | None,
    typer.Option(
        "--names", metavar="A,B,C", help="Names of the parallel workers. [default: worker-1..N]"
    ),
]
RemoteOpt = Annotated[
    str | None,
    typer.Option(
        "--remote",
        metavar="NAME",
        help="Git remote shared by several hosts: each task's commit is rebased onto "
        "NAME/<target> and pushed there, retried when another host pushed first. "
        "[default: config]",
    ),
]
TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target", metavar="BRANCH", help="Branch task commits land on. [default: current]"
    ),
]
PushBranchesOpt = Annotated[
    bool,
    typer.Option(
        "--push-branches",
        help="With --remote: push each task's branch ralph/<task-id> for review instead of "
        "the target; the task is done once pushed.",
    ),
]
NoLiveOpt = Annotated[
    bool,
    typer.Option(
        "--no-live", help="Plain progress lines instead of the live table (also when not a TTY)."
    ),
]


def run(
    agent: AgentOpt = None,
    agent_cmd: AgentCmdOpt = None,
    prompt_mode: PromptModeOpt = None,
    prompt: PromptOpt = None,
    config: ConfigOpt = None,
    worker: Annotated[
        str | None,
        typer.Option("--worker", metavar="NAME", help="Worker name. [default: host-pid]"),
    ] = None,
    capabilities: CapsOpt = None,
    lease: LeaseOpt = None,
    max_tasks: MaxTasksOpt = None,
    max_cost: MaxCostOpt = None,
    max_time: MaxTimeOpt = None,
    task_timeout: TaskTimeoutOpt = None,
    idle_timeout: IdleTimeoutOpt = None,
    grace: GraceOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    verify: VerifyOpt = None,
    once: OnceOpt = False,
    watch: WatchOpt = False,
    dry_run: DryRunOpt = False,
    allow_dirty: AllowDirtyOpt = False,
    sandbox: SandboxOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    workers: WorkersOpt = 1,
    names: NamesOpt = None,
    no_live: NoLiveOpt = False,
    remote: RemoteOpt = None,
    target: TargetOpt = None,
    push_branches: PushBranchesOpt = False,
) -> None:
    """Run the RALPH loop: a fresh agent per ready task, one commit per task, until drained.

    \b
    Example:
      ralph run --agent claude --max-cost 5
      ralph run --agent-cmd "python my_agent.py" --once
      ralph run --workers 3 --agent claude
      ralph run --remote origin --agent claude     # on each host, one shared RALPH_DB
    Exit codes: 0 drained or cap reached, 8 config, 9 git tree, 10 agent auth failed,
    11 too many failures in a row, 12 stopped by a signal while an agent worked,
    13 some task ended failed, 15 the sandbox cannot run here.
    """
    flags = Flags(**{k: v for k, v in locals().items() if k in Flags.__dataclass_fields__})
    flags.verify = verify or []
    _execute(flags)


def worker_start(
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", help="Worker name. [default: host-pid]"),
    ] = None,
    capabilities: CapsOpt = None,
    agent: AgentOpt = None,
    agent_cmd: AgentCmdOpt = None,
    prompt_mode: PromptModeOpt = None,
    prompt: PromptOpt = None,
    config: ConfigOpt = None,
    lease: LeaseOpt = None,
    max_tasks: MaxTasksOpt = None,
    max_cost: MaxCostOpt = None,
    max_time: MaxTimeOpt = None,
    task_timeout: TaskTimeoutOpt = None,
    idle_timeout: IdleTimeoutOpt = None,
    grace: GraceOpt = None,
    max_attempts: MaxAttemptsOpt = None,
    verify: VerifyOpt = None,
    allow_dirty: AllowDirtyOpt = False,
    sandbox: SandboxOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    remote: RemoteOpt = None,
    target: TargetOpt = None,
    push_branches: PushBranchesOpt = False,
) -> None:
    """Start a persistent worker: `ralph run --watch` under a name, until SIGTERM or `worker stop`.

    \b
    Example:
      ralph worker start --name implementer-1 --capabilities tx-implementer
      kill -SIGTERM <worker-pid>   # or: ralph worker stop implementer-1
      ralph worker start --name host-a --remote origin   # pushes each task's commit
    """
    flags = Flags(**{k: v for k, v in locals().items() if k in Flags.__dataclass_fields__})
    flags.worker, flags.watch, flags.verify = name, True, verify or []
    flags.worktree = True  # worker processes share the repo: each works in its own worktree
    _execute(flags)


def demo(
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[PATH]",
            help="Folder for the scratch repo (new or empty). [default: a temp dir]",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", "-w", "-j", min=1, help="Parallel workers (Alpha, Beta, ...)."),
    ] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Show the whole loop offline: a scratch repo, five tasks, parallel workers running a demo
    agent in their own worktrees, one commit per task on a linear history.

    \b
    Example:
      ralph demo              # then: cd <the printed folder> && ralph list
      ralph demo --workers 1  # one worker in the repository itself
    """
    import subprocess
    import tempfile

    from ralph.store import ensure_ralph_dir, open_store

    if not _DEMO_AGENT.is_file():
        raise ConfigError(
            f"the demo agent {_DEMO_AGENT} is missing",
            hint="run `ralph demo` from a source checkout (pip install -e .)",
        )
    if path is None:
        root = Path(tempfile.mkdtemp(prefix="ralph-demo-"))
    else:
        root = path.resolve()
        if root.exists() and any(root.iterdir()):
            raise UsageError(f"{root} is not empty", hint="give a new or empty folder")
        root.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    for key, value in (("user.name", "ralph demo"), ("user.email", "demo@ralph.invalid")):
        subprocess.run([*git, "config", key, value], check=True)
    (root / "README.md").write_text("# ralph demo\n\nEach task's agent writes work/<task>.md.\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Start the demo project"], check=True)
    ensure_ralph_dir(root)
    db = root / ".ralph" / "ralph.db"
    with open_store(db) as store:
        store.add_many(
            [
                {"id": "T1", "title": "Write the task parser", "priority": 3},
                {"id": "T2", "title": "Test the task parser", "blocked_by": ["T1"]},
                {"id": "T3", "title": "Document the command line", "priority": 1},
                {
                    "id": "T4",
                    "title": "Wire the parser into the command line",
                    "blocked_by": ["T1", "T3"],
                },
                {"id": "T5", "title": "Write the release notes", "blocked_by": ["T2", "T4"]},
            ]
        )
    sys.stderr.write(f"demo repository: {root}\n")
    session.reset(str(db), session.debug)
    os.chdir(root)
    flags = Flags(
        agent_cmd=shlex.join([sys.executable, str(_DEMO_AGENT)]),
        worker="demo-worker" if workers == 1 else None,
        workers=workers,
        names=",".join(_DEMO_NAMES[:workers]) if 1 < workers <= len(_DEMO_NAMES) else None,
        as_json=as_json,
        quiet=as_json,
    )
    summary = _execute(flags, exit_on_error=False)
    if not as_json:
        typer.echo(
            subprocess.run(
                [*git, "log", "--oneline", "--graph"], check=True, capture_output=True, text=True
            ).stdout.rstrip()
        )
    if summary is not None and summary.exit_code:
        raise typer.Exit(summary.exit_code)


# -- building the run --------------------------------------------------------------------------
def _duration(value: str | None, default: float | None, what: str) -> float | None:
    if value is None:
        return default
    if value.strip().lower() in ("0", "none", "off") and what != "--lease":
        return None
    return parse_duration(value, what=what)


def resolve_agent(settings: Settings, flags: Flags, check: bool = True) -> tuple[Agent, str]:
    """The agent adapter to launch, its binary checked (unless `check` is False, for
    --dry-run: then a missing binary is only reported); ConfigError names what is wrong."""
    from ralph.config import PROMPT_MODES

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
        from ralph.agents.registry import configured_agent
    except ModuleNotFoundError as exc:  # a trimmed install without the adapters
        if exc.name != "ralph.agents.registry" or not spec.get("command"):
            raise
        from ralph.agents.base import Agent

        return Agent(command=spec["command"], prompt_mode=spec.get("prompt_mode"))
    return configured_agent(name, spec)


def build(flags: Flags) -> tuple[Any, Any, Any, Any]:
    """Check everything and build (store, workspace, options, control); raises before any change."""
    from ralph.config import load_settings
    from ralph.control import RunControl
    from ralph.options import RunOptions
    from ralph.prompts import load_commit_message, load_prompt, sample_context
    from ralph.store import ensure_ralph_dir, project_root
    from ralph.workspace.git import repo_root

    lease = _duration(flags.lease, None, "--lease")
    max_time = _duration(flags.max_time, None, "--max-time")
    task_timeout = _duration(flags.task_timeout, -1.0, "--task-timeout")
    idle_timeout = _duration(flags.idle_timeout, -1.0, "--idle-timeout")
    grace = _duration(flags.grace, None, "--grace")
    root = repo_root(Path.cwd())
    settings = load_settings(project_root(root), flags.config)
    worker = flags.worker or settings.worker or f"{os.uname().nodename}-{os.getpid()}"
    flags.remote = flags.remote or settings.remote
    if flags.push_branches and not flags.remote:
        raise UsageError("--push-branches needs a remote", hint="add --remote origin")
    agent, agent_name = resolve_agent(settings, flags, check=not flags.dry_run)
    if not flags.dry_run:
        from ralph.doctor import preflight

        preflight(agent, root)
    sandbox = None
    if not flags.dry_run:
        from ralph.sandbox.confine import Sandbox

        ours = [settings.progress, settings.prd]  # files ralph writes in the workspace
        sandbox = Sandbox.resolve(flags.sandbox, settings.sandbox, agent, root, ours)
    prompt = load_prompt(root, flags.prompt, settings.prompt)
    commit_message = load_commit_message(settings.commit_message)
    sample = sample_context(root, worker, agent_name, settings.vars)
    prompt.render(sample)
    commit_message.render({**sample, "cost": "$0.0000", "cost_usd": 0.0})
    verify = settings.verify
    if flags.verify:
        from ralph.config import _argv

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
    )
    store = session.store()
    store.max_expiries = settings.max_expiries
    if not flags.dry_run and getattr(store, "path", None):  # SQLite: a copy per run, newest 5
        from ralph.store.backup import backup

        backup(store.path)
    ensure_ralph_dir(root)
    log = (lambda line: None) if flags.quiet else None
    control = RunControl(
        max_tasks=flags.max_tasks, max_cost=flags.max_cost, max_time=max_time, log=log
    )
    _notifications(store, settings, control)
    return store, root, options, control


def _execute(flags: Flags, *, exit_on_error: bool = True) -> RunSummary | None:
    from ralph import hostid
    from ralph.preview import preview
    from ralph.runner import run as run_workers
    from ralph.runner import worker_names

    names: list[str] = []
    parallel = flags.workers > 1 or flags.names is not None or flags.worktree
    if parallel and not flags.worktree:
        names = worker_names(flags.workers, flags.names)
    store, root, options, control = build(flags)
    if (flags.remote or flags.target) and not parallel:  # a landing elsewhere needs a worktree
        parallel = flags.worktree = True
    elif flags.remote and flags.names is None and not flags.worktree:
        names = hostid.host_names(names, root)  # unique across hosts, even one hostname
    if flags.dry_run:
        shown = preview(store, root, options)
        if flags.as_json:
            emit_json(shown)
        for item in [] if flags.as_json else shown:
            typer.echo(
                f"== {item['task']}: {item['title']}\n$ {shlex.join(item['argv'])}"
                + (" < prompt" if item["stdin"] else "")
                + f"\n{item['prompt']}"
            )
        if not shown and not flags.as_json:
            typer.echo("No ready tasks")
        return None
    if not parallel or flags.worktree:
        names = [options.worker]
    live = False if (flags.no_live or flags.quiet or flags.as_json or flags.worktree) else None
    from ralph.ops.github_issues import LandedSync

    github = LandedSync.start_if_needed(store, options.settings, control.log)
    summary = run_workers(
        store,
        options,
        control,
        names=names,
        repo=root,
        mode="worktree" if parallel else "checkout",
        allow_dirty=flags.allow_dirty,
        target=flags.target,
        remote=flags.remote,
        push_branches=flags.push_branches,
        live=live if parallel else False,
    )
    if github is not None:  # the last landings' comments on their issues
        github.stop()
    from ralph.ops.report import run_ended

    run_id = run_ended(store, control, names, summary)  # what `ralph report --run ID` reads
    if options.settings.report.get("write"):
        from ralph.ops.report import write_run_report

        control.report_path = write_run_report(store, root, control, run_id)
    control.finished(summary)  # run_finished, with the report if one was written
    if flags.as_json:
        emit_json(summary.to_dict())
    else:
        from ralph.control import console_line

        console_line(_summary_line(summary), sys.stderr if flags.quiet else sys.stdout)
    if summary.exit_code and exit_on_error:
        raise control.error or _interrupted()
    return summary


def _notifications(store: Any, settings: Settings, control: Any) -> None:
    """[notify] / RALPH_NOTIFY_URLS: a Notifier on the run's control (ralph.notify)."""
    from ralph.notify import Notifier, resolve

    found = resolve(settings.notify, settings.source or "ralph.toml")
    if found.urls:
        control.notifier = Notifier(
            found, record=store.note_event, log=lambda line: control.log(line)
        )


def _interrupted() -> Exception:
    from ralph.errors import RunInterruptedError

    return RunInterruptedError()


def _summary_line(s: RunSummary) -> str:
    from ralph.durations import format_duration

    parts = [
        f"{s.done} done",
        f"{s.failed} failed",
        f"{s.retried} to retry",
        f"{s.skipped} skipped",
        f"{s.commits} commits",
        f"{s.launches} agent launches"
        + (f" ({s.conflicts} merge conflicts)" if s.conflicts else ""),
        f"${s.cost_usd:.4f}"
        + (f" + {s.unknown_cost} launches of unknown cost" if s.unknown_cost else "")
        if s.cost_known
        else "cost unknown",
        format_duration(s.wall_s),
    ]
    why = f" ({s.stop_reason})" if s.stop_reason else ""
    return "Run: " + ", ".join(parts) + why


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("demo")(demo)
    worker_app.command("start")(worker_start)
