"""The verify commands (`[run] verify`): run after an agent and again on the target's newer
head before landing; the first that fails ends the attempt `verify_failed` with its output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ralph.control import RunControl
from ralph.outcomes import note as failure_note
from ralph.process import AgentProcess


def run_verify(
    commands: list[list[str]],
    *,
    cwd: Path,
    run_dir: Path,
    env: dict[str, str],
    control: RunControl,
    confined: Any = None,
    timeout: float | None = None,
    kill_grace: float = 5.0,
    again: bool = False,
) -> tuple[str, str | None]:
    """Run each command in `cwd` (inside the attempt's sandbox when `confined`); returns
    ("success", None), ("verify_failed", note) or ("interrupted", note) when the run stopped."""
    for n, argv in enumerate(commands, 1):
        name = f"verify-{n}" + ("-rebased" if again else "")
        launch, launch_env = argv, env
        if confined is not None:
            launch, launch_env = confined.wrap_verify(argv, env, cwd)
        proc = AgentProcess(
            launch,
            cwd=cwd,
            out_dir=run_dir,
            stdin=None,
            env={**launch_env, "PWD": str(cwd)},
            timeout=timeout,
            kill_grace=kill_grace,
            names=(f"{name}.stdout", f"{name}.stderr"),
            wrapper=confined is not None,
        )
        control.track(proc)
        try:
            result = proc.run()
        finally:
            control.untrack(proc)
        if result.cancel_reason is not None:
            return "interrupted", "the run was stopped during verification"
        if not result.ok:
            shown = " ".join(argv)
            where = " on the target's newer head" if again else ""
            return "verify_failed", failure_note(
                f"verify command `{shown}` failed{where} (exit {result.exit_code})", result
            )
    return "success", None
