"""What one worker is given: its resolved options (`RunOptions`) and the workspace it lands
through (`Workspace`). The worker, the run, `--dry-run` and the live view all read these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ralph.agents.base import Agent
from ralph.config import Settings
from ralph.prompts import Template
from ralph.workspace.base import Collected, Fence, Landing, Reverify


class Workspace(Protocol):
    """Where an agent works on a task; only git, never the store."""

    root: Path
    path: Path
    target: str

    def landed(self, task_id: str) -> str | None: ...
    def landed_all(self) -> dict[str, str]: ...
    def prepare(self, task_id: str, attempt: int, run_dir: Path) -> str: ...
    def collect(self, task_id: str, attempt: int, base: str) -> Collected: ...
    def land(
        self,
        task_id: str,
        collected: Collected,
        message: str,
        fence: Fence,
        reverify: Reverify | None = None,
    ) -> Landing: ...
    def discard(self, task_id: str, attempt: int, keep: Path) -> list[str]: ...
    def finish(self) -> None: ...
    def agent_env(self) -> dict[str, str]: ...
    def hidden_work(self, base: str) -> str | None: ...


@dataclass
class RunOptions:
    """Everything one worker needs, resolved from config and flags."""

    agent: Agent
    agent_name: str
    worker: str
    prompt: Template
    commit_message: Template
    capabilities: list[str] = field(default_factory=list)
    lease: float = 1800.0
    max_attempts: int = 3
    max_conflicts: int = 10
    task_timeout: float | None = 3600.0
    idle_timeout: float | None = 900.0
    grace: float = 30.0
    kill_grace: float = 5.0
    backoff: float = 30.0
    backoff_max: float = 1800.0
    rate_limit_pause: float = 60.0
    breaker: int = 5
    no_changes: str = "done"
    verify: list[list[str]] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)
    once: bool = False
    watch: bool = False
    poll: float = 2.0
    max_tasks: int | None = None
    max_cost: float | None = None
    max_time: float | None = None
    settings: Settings = field(default_factory=Settings)  # progress memory, prd.json
    sandbox: Any = None  # ralph.sandbox.confine.Sandbox; None runs agents unconfined
    # A landing's conflict (ralph.resolve): "agent" resolves it first, "rerun" runs the task
    # again; the resolution's agent (None: the task's) and template (None: the built-in).
    resolve: str = "agent"
    merge_agent: Agent | None = None
    merge_agent_name: str | None = None
    resolve_prompt: Template | None = None

    def policy(self) -> str:
        """What confines the attempts: "sandbox: bwrap, network=..." or "unsandboxed"."""
        return self.sandbox.describe() if self.sandbox is not None else "unsandboxed"


def heartbeat_interval(lease: float) -> float:
    """A sixth of the lease, between 0.5 s and 30 s: a worker is judged dead after three missed
    beats, so a 30-minute lease survives a 25 s network blip and a 4 s test lease recovers
    in 2 s."""
    return min(30.0, max(0.5, lease / 6))
