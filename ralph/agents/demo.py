"""The demo agent as a built-in: `ralph run --agent demo` replays `ralph demo` in any repo."""

from __future__ import annotations

import sys

from ralph.agents.command import Command
from ralph.agents.registry import register


@register
class Demo(Command):
    """ralph's deterministic demo agent (no model, no credentials): writes work/<task id>.md."""

    name = "demo"
    executable = ""
    prompt_mode = "stdin"
    install_hint = "it ships with ralph: reinstall ralph"

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs["command"] = kwargs.get("command") or [sys.executable, "-m", "ralph.demo_agent"]
        super().__init__(**kwargs)
