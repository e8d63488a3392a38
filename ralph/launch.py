"""How an agent process is started for one attempt: its environment (the task, the store, the
workspace, the attempt's git marker) and its `AgentProcess`, confined when a sandbox is on."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ralph import memory
from ralph.agents.base import Agent, AgentSignal
from ralph.models import Task
from ralph.options import RunOptions, Workspace
from ralph.process import AgentProcess
from ralph.store import agent_db
from ralph.store.base import SQLStore


def agent_env(
    agent: Agent,
    opt: RunOptions,
    store: SQLStore,
    workspace: Workspace,
    task: Task,
    run_dir: Path,
) -> dict[str, str]:
    """The environment of the agent (and of the verify commands) for one attempt."""
    env = {**os.environ, **agent.env()}
    env.update(
        RALPH_TASK_ID=task.id,
        RALPH_WORKER=opt.worker,
        RALPH_DB=agent_db(store),  # absolute; PostgreSQL's with its password
        RALPH_RUN_DIR=str(run_dir),
        RALPH_NOTES=str(memory.notes_path(run_dir)),
        RALPH_WORKSPACE=str(workspace.path),
        PWD=str(workspace.path),  # CLIs that write where $PWD points (opencode)
    )
    env.update(workspace.agent_env())  # its commits carry the attempt's marker
    env.update(agent.attempt_env(run_dir))
    return env


def agent_process(
    agent: Agent,
    opt: RunOptions,
    prompt: str,
    cwd: Path,
    run_dir: Path,
    env: dict[str, str],
    *,
    confined: Any = None,
    on_signal: Callable[[AgentSignal], None] | None = None,
) -> AgentProcess:
    """The agent's process for one attempt, not started yet (argv list, never a shell)."""
    argv = agent.argv(prompt, run_dir / "prompt.md")
    if confined is not None:
        argv, env = confined.wrap(argv, env)
    return AgentProcess(
        argv,
        cwd=cwd,
        out_dir=run_dir,
        env=env,
        stdin=agent.stdin(prompt),
        parser=agent.new_parser(),
        timeout=opt.task_timeout,
        idle_timeout=opt.idle_timeout,
        kill_grace=opt.kill_grace,
        on_signal=on_signal,
        wrapper=confined is not None,
    )
