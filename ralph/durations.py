"""Parse the durations users type: `30` (minutes, as in tx), `90s`, `30m`, `2h`."""

from __future__ import annotations

import re

from ralph.errors import UsageError

# The config keys (ralph.toml, [run]) whose values are durations.
DURATIONS = {
    "lease",
    "task_timeout",
    "idle_timeout",
    "grace",
    "kill_grace",
    "backoff",
    "backoff_max",
    "rate_limit_pause",
    "poll",
    "merge_lock_timeout",
}
OPTIONAL_DURATIONS = {"task_timeout", "idle_timeout"}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|[smhd])?\s*$")


def parse_duration(
    text: str | float | int, *, bare_unit: str = "m", what: str = "duration"
) -> float:
    """Seconds in `text`; a bare number is read in `bare_unit` (minutes for leases, like tx)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value, unit = float(text), bare_unit
    else:
        match = _PATTERN.match(str(text))
        if not match:
            raise UsageError(
                f"invalid {what} {text!r}",
                hint="use a number of minutes or a value like 90s, 30m, 2h",
            )
        value, unit = float(match.group(1)), match.group(2) or bare_unit
    seconds = value / 1000 if unit == "ms" else value * _UNITS[unit]
    if seconds <= 0:
        raise UsageError(f"invalid {what} {text!r}: it must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: 45s, 12m30s, 2h05m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
