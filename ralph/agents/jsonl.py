"""A parser base for agents that print one JSON event per line, with text fallback for the rest."""

from __future__ import annotations

import json
from typing import Any, Literal

from ralph.agents.base import AgentSignal, StreamParser
from ralph.agents.text import SignalOnce, classify_text


class JsonLinesParser(StreamParser):
    """JSON lines on stdout go to `event()`; stderr and other lines to the text matcher."""

    def __init__(self) -> None:
        super().__init__()
        self.once = SignalOnce()

    def feed(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        event = _json_object(line) if stream == "stdout" else None
        if event is None:
            return self.text(line, stream)
        return [s for signal in self.event(event) for s in self.once(signal)]

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        """Handle one JSON event; return the signals it carries."""
        return []

    def text(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        """A line that is not a JSON event (stderr, banners, stack traces)."""
        return self.once(classify_text(line))

    def add_path(self, path: object) -> None:
        """Record a file the agent reported writing (best effort, first report wins the order)."""
        if isinstance(path, str) and path and path not in self.report.changed_paths:
            self.report.changed_paths.append(path)


def _json_object(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def as_int(value: object) -> int:
    """An integer count from a JSON field, 0 for anything else."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
