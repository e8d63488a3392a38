"""A parser base for agents that print one JSON event per line on stdout."""

from __future__ import annotations

import json
from typing import Any, Literal

from ralph.agents.base import AgentSignal
from ralph.agents.text import TextParser


class JsonLinesParser(TextParser):
    """JSON lines on stdout go to `event()`, which may signal (they are the CLI's own structured
    events); stderr goes to `early()` (the CLI's fixed-format lines) and is kept for
    `failure_signal`; other stdout lines (banners, prose) are never read for signals."""

    def feed(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        event = _json_object(line) if stream == "stdout" else None
        if event is not None:
            signals = self.event(event)
        else:
            if stream == "stderr":
                self.keep_error_line(line)
            signals = [self.early(line, stream)]
        return [s for signal in signals for s in self.once(self.with_fix(signal))]

    def event(self, event: dict[str, Any]) -> list[AgentSignal | None]:
        """Handle one JSON event; return the signals it carries."""
        return []

    def early(self, line: str, stream: Literal["stdout", "stderr"]) -> AgentSignal | None:
        """A signal from one of the CLI's own fixed-format lines (a login prompt), else None."""
        return None

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


def count(value: object) -> int | None:
    """A token count from a JSON field; None (unknown, not 0) when the CLI did not report one."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def plus(total: int | None, *values: int | None) -> int | None:
    """`total` plus the known `values`; None while nothing is known."""
    known = [v for v in values if v is not None]
    if not known:
        return total
    return (total or 0) + sum(known)
