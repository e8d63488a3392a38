"""The options of `ralph run` and `ralph worker start`: one table (`SHARED`) both commands
take, and `Flags`, what a command's options become before anything is checked."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer


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
    resolve: str | None = None
    land: str | None = None


def _agent_help() -> str:
    """--agent's help, naming installed plugin agents too when help is shown (looking them up
    would cost every other command its time)."""
    names = "claude, codex, gemini, aider, opencode, amp, cursor, qwen, copilot, command"
    if {"--help", "-h"} & set(sys.argv):
        try:
            from ralph.agents.registry import plugin_agents  # lazy: start-up (only for --help)

            names += "".join(f", {n}" for n in plugin_agents())
        except Exception:  # noqa: BLE001 - a broken plugin must not break --help
            pass
    return (
        f"Agent from the registry or ralph.toml ({names}, demo: offline); a,b: fall back to b "
        "when a is rate-limited, fails auth or spends its max_cost. [default: config, claude]"
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
ResolveOpt = Annotated[
    str | None,
    typer.Option(
        "--resolve",
        metavar="agent|rerun",
        help="A landing that conflicts: an agent resolves the merge first (agent), or the task "
        "runs again from scratch (rerun). [default: config [merge] resolve, agent]",
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
LandOpt = Annotated[
    str | None,
    typer.Option(
        "--land",
        metavar="target|review|pr",
        help="Where each task's commit goes: the target branch, refs/heads/ralph/review/<task> "
        "until `ralph approve`, or a pull request per task (pr: needs --remote and gh). "
        "[default: config [land] mode, target]",
    ),
]
NoLiveOpt = Annotated[
    bool,
    typer.Option(
        "--no-live", help="Plain progress lines instead of the live table (also when not a TTY)."
    ),
]


WorkerOpt = Annotated[
    str | None,
    typer.Option("--worker", metavar="NAME", help="Worker name. [default: host-tag-pid]"),
]
NameOpt = Annotated[
    str | None,
    typer.Option("--name", metavar="NAME", help="Worker name. [default: host-tag-pid]"),
]

# The options `ralph run` and `ralph worker start` share, in the order `--help` lists them:
# name -> (annotated type, default).
SHARED: dict[str, tuple[Any, Any]] = {
    "agent": (AgentOpt, None),
    "agent_cmd": (AgentCmdOpt, None),
    "prompt_mode": (PromptModeOpt, None),
    "prompt": (PromptOpt, None),
    "config": (ConfigOpt, None),
    "capabilities": (CapsOpt, None),
    "lease": (LeaseOpt, None),
    "max_tasks": (MaxTasksOpt, None),
    "max_cost": (MaxCostOpt, None),
    "max_time": (MaxTimeOpt, None),
    "task_timeout": (TaskTimeoutOpt, None),
    "idle_timeout": (IdleTimeoutOpt, None),
    "grace": (GraceOpt, None),
    "max_attempts": (MaxAttemptsOpt, None),
    "verify": (VerifyOpt, None),
    "allow_dirty": (AllowDirtyOpt, False),
    "sandbox": (SandboxOpt, None),
    "resolve": (ResolveOpt, None),
    "land": (LandOpt, None),
    "as_json": (JsonOpt, False),
    "quiet": (QuietOpt, False),
    "remote": (RemoteOpt, None),
    "target": (TargetOpt, None),
    "push_branches": (PushBranchesOpt, False),
}


def with_options(
    first: dict[str, tuple[Any, Any]], then: dict[str, tuple[Any, Any]] | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the SHARED options, after its own `first` ones and before `then`, as
    its signature: typer reads a command's parameters from `__signature__`."""

    def apply(command: Callable[..., None]) -> Callable[..., None]:
        options = {**first, **SHARED, **(then or {})}
        kind = inspect.Parameter.KEYWORD_ONLY
        params = [
            inspect.Parameter(name, kind, annotation=annotation, default=default)
            for name, (annotation, default) in options.items()
        ]
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return apply
