"""Recognise auth failures, rate/usage limits and network outages in error text, and read the
reset time a limit message names.

These are free-text matchers, so they only ever read text that is known to be an error: a CLI's
JSON error event, or the stderr of a process that failed (`TextParser.failure_signal`). They never
read an agent's normal output: an agent that prints "returns 401 Unauthorized" while fixing an
endpoint and exits 0 must not stop the run. The patterns are specific ("429 Too Many Requests",
not "rate") all the same.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ralph.agents.base import AgentSignal, SignalKind, StreamParser

AUTH_RE = re.compile(
    r"not logged in|please run /login|invalid (?:or missing )?api key|invalid x-api-key"
    r"|incorrect api key|not able to authenticate you"
    r"|api key not valid|authentication_error|authentication_failed|AuthenticationError"
    r"|\b401 unauthorized|\b403 forbidden|status(?: code)?[:= ]+40[13]\b|oauth token has expired"
    r"|permission_error|authentication required",
    re.IGNORECASE,
)
LIMIT_RE = re.compile(
    r"status(?: code)?[:= ]+429\b|\b429 too many requests|too many requests"
    r"|rate[ _-]?limit(?:ed|_error| exceeded| reached)|RateLimitError|usage limit"
    r"|hit your (?:usage |session |weekly )?limit|(?:hour|daily|weekly|session|usage) limit reached"
    r"|out of (?:extra )?usage|has rate limited you|quota exceeded"
    r"|exceeded your (?:current )?quota|RESOURCE_EXHAUSTED|resource has been exhausted",
    re.IGNORECASE,
)
NETWORK_RE = re.compile(
    r"waiting for network|failed to lookup address|name or service not known"
    r"|temporary failure in name resolution|getaddrinfo (?:ENOTFOUND|EAI_AGAIN)|\bENOTFOUND\b"
    r"|\bECONNREFUSED\b|connection refused|\bENETUNREACH\b|network is unreachable"
    r"|\bEAI_AGAIN\b|dns error|error sending request for url|unable to connect\b"
    r"|APIConnectionError|fetch failed|\bconnection error\b",
    re.IGNORECASE,
)

_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_SPAN_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*(days?|d|hours?|hrs?|h|minutes?|mins?|m(?!s)|seconds?|secs?|s)(?![a-z])",
    re.IGNORECASE,
)
_IN_RE = re.compile(
    r"(?:try again|retry|retrying|resets?|reset|available again|wait)\s*(?:in|after)\s+"
    r"((?:\d+(?:\.\d+)?\s*[a-z]+[\s,]*(?:and\s+)?)+)",
    re.IGNORECASE,
)
_RETRY_AFTER_RE = re.compile(r"retry[-_ ]after[\"']?\s*[:=]\s*[\"']?(\d+(?:\.\d+)?)", re.IGNORECASE)
_EPOCH_RE = re.compile(r"(?:\||resets?_?at[\"']?\s*[:=]\s*)(\d{10})(?:\.\d+)?\b", re.IGNORECASE)
_ISO_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)"
)
_CLOCK_RE = re.compile(
    r"(?:resets?|try again|available again)\s*(?:at|on)?\s+"
    r"(?:(?P<date>[A-Z][a-z]{2,8}\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4}),? )?"
    r"(?P<hour>\d{1,2})(?::(?P<min>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?"
    r"(?:\s*\((?P<tz>[A-Za-z_]+(?:/[A-Za-z_]+)*)\)|\s+(?P<utc>UTC|GMT))?",
    re.IGNORECASE,
)


def span_seconds(text: str) -> float | None:
    """Seconds in a span like `1h20m`, `1 hour 20 minutes`, `41.2s`; None when there is none."""
    total, found = 0.0, False
    for value, unit in _SPAN_RE.findall(text):
        total += float(value) * _UNIT_SECONDS[unit[0].lower()]
        found = True
    return total if found else None


def parse_reset(text: str, now: float | None = None) -> tuple[float | None, float | None]:
    """(retry_after seconds, reset_at epoch) named in a limit message; (None, None) if neither."""
    now = time.time() if now is None else now
    if m := _EPOCH_RE.search(text):
        return None, float(m.group(1))
    if m := _RETRY_AFTER_RE.search(text):
        return float(m.group(1)), None
    if m := _IN_RE.search(text):
        seconds = span_seconds(m.group(1))
        if seconds is not None:
            return seconds, None
    if m := _ISO_RE.search(text):
        try:
            stamp = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
        except ValueError:
            stamp = None
        if stamp is not None:
            return None, (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()
    if m := _CLOCK_RE.search(text):
        return None, _clock_time(m, now)
    return None, None


def _clock_time(m: re.Match[str], now: float) -> float | None:
    """The next moment after `now` showing the matched wall-clock time (in its zone, else local)."""
    hour, minute = int(m["hour"]), int(m["min"] or 0)
    ampm = (m["ampm"] or "").lower().replace(".", "")
    if not ampm and m["min"] is None:
        return None  # a bare number ("resets 3") is too vague to wait for
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    tz: timezone | ZoneInfo | None = UTC if m["utc"] else None
    if m["tz"]:
        try:
            tz = ZoneInfo(m["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            tz = None
    current = datetime.fromtimestamp(now, tz) if tz else datetime.fromtimestamp(now).astimezone()
    if m["date"]:
        raw = re.sub(r"(\d)(st|nd|rd|th)", r"\1", m["date"]).replace(",", "").replace(".", "")
        for fmt in ("%b %d %Y", "%B %d %Y"):
            try:
                day = datetime.strptime(raw, fmt)
            except ValueError:
                continue
            return current.replace(
                year=day.year,
                month=day.month,
                day=day.day,
                hour=hour,
                minute=minute,
                second=0,
                microsecond=0,
            ).timestamp()
        return None
    target = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= current:
        target += timedelta(days=1)
    return target.timestamp()


# Every match of AUTH_RE or LIMIT_RE contains one of these (lowercased). Checking them first
# keeps the regexes off almost every line: an agent printing 100 MB of ordinary output cost the
# worker about 50 s of CPU in the regexes alone, against 0.2 s for the agent.
_KEYWORDS = (
    "logged in", "/login", "api key", "api-key", "authenticat", "401", "403", "oauth",
    "permission", "429", "many requests", "rate limit", "rate_limit", "rate-limit", "ratelimit",
    "limit", "usage", "quota", "resource_exhausted", "exhausted", "authentication required",
)  # fmt: skip
_NET_KEYWORDS = (
    "network", "lookup", "name", "enotfound", "econnrefused", "refused", "unreachable",
    "eai_again", "dns", "sending request", "connect", "fetch failed",
)  # fmt: skip
# Limit and auth messages are short; a line longer than this is data (a file, a tool result).
_SCAN_CHARS = 8192


def classify_text(
    text: str, now: float | None = None, *, network: bool = True
) -> AgentSignal | None:
    """An auth_failed, rate_limited or network_down signal if the error `text` says so (in that
    order of precedence), else None. Only for text known to be an error (see the module note)."""
    text = text[:_SCAN_CHARS]
    low = text.lower()
    if any(key in low for key in _KEYWORDS):
        if AUTH_RE.search(text):
            return AgentSignal("auth_failed", _clip(text))
        if LIMIT_RE.search(text):
            retry_after, reset_at = parse_reset(text, now)
            return AgentSignal(
                "rate_limited", _clip(text), retry_after=retry_after, reset_at=reset_at
            )
    if network and any(key in low for key in _NET_KEYWORDS) and NETWORK_RE.search(text):
        return AgentSignal("network_down", _clip(text))
    return None


_PRECEDENCE: dict[SignalKind, int] = {"auth_failed": 0, "rate_limited": 1, "network_down": 2}


def classify_lines(lines: Iterable[str], now: float | None = None) -> AgentSignal | None:
    """The most serious signal in a failed run's error lines (auth, then limit, then network).

    A limit message's retry time may be wrapped onto the lines after it ("Please try again" /
    "in 20s."), so the time is read from the matching line joined with the next two.
    """
    items = list(lines)
    best: AgentSignal | None = None
    for i, line in enumerate(items):
        found = classify_text(line, now)
        if found is None:
            continue
        if found.kind == "rate_limited" and found.retry_after is None and found.reset_at is None:
            found.retry_after, found.reset_at = parse_reset(" ".join(items[i : i + 3]), now)
        if best is None or _PRECEDENCE[found.kind] < _PRECEDENCE[best.kind]:
            best = found
        if best.kind == "auth_failed":
            break
    return best


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SignalOnce:
    """Lets each kind of signal through once per run: the loop acts on the first, not retries."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, signal: AgentSignal | None) -> list[AgentSignal]:
        if signal is None or signal.kind in self.seen:
            return []
        self.seen.add(signal.kind)
        return [signal]


ERROR_LINES = 60  # stderr lines kept for classifying a failed run


class TextParser(StreamParser):
    """For agents that print plain text: nothing they print signals while they run; when the
    process failed, the last lines of its stderr are classified."""

    def __init__(self) -> None:
        super().__init__()
        self.once = SignalOnce()
        self.stderr: deque[str] = deque(maxlen=ERROR_LINES)

    def feed(self, line: str, stream: Literal["stdout", "stderr"]) -> list[AgentSignal]:
        if stream == "stderr":
            self.keep_error_line(line)
        return []

    def keep_error_line(self, line: str) -> None:
        """Remember one stderr line for `failure_signal` (long lines are data, not messages)."""
        if line.strip():
            self.stderr.append(line[:_SCAN_CHARS])

    def failure_signal(self, exit_code: int | None) -> AgentSignal | None:
        found = classify_lines(self.stderr)
        return self.with_fix(found)

    def with_fix(self, found: AgentSignal | None) -> AgentSignal | None:
        """`found` with this agent's fix for its kind (if it has none yet)."""
        if found is not None and found.fix is None:
            found.fix = self.signal(found.kind, found.message).fix
        return found
