"""`ralph stats`: attempts, success rate, durations, cost and tokens, grouped from the attempts
table. Days are local calendar days, as an operator reading the morning report counts them."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ralph import errors
from ralph.models import Attempt
from ralph.store.base import SQLStore

GROUPINGS = ("agent", "model", "day", "task", "worker", "outcome", "kind")
UNKNOWN_MODEL = "unknown"  # the group of attempts that recorded no model (before schema 3)
SUCCESS = ("success", "no_changes")


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def model_of(a: Attempt) -> str:
    """The model an attempt ran, as every grouping by model names it."""
    return a.model or UNKNOWN_MODEL


def start_of_today(now: float | None = None) -> float:
    """Epoch seconds of local midnight today."""
    t = time.localtime(time.time() if now is None else now)
    return time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (p50 of [1, 2, 3, 4] is 2): always one of the values seen."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def cost_of(attempts: Iterable[Attempt]) -> dict[str, Any]:
    """What a group of attempts cost, one way everywhere: the sum of the known costs (None
    when none is known, never 0) and how many finished launches reported no cost."""
    items = list(attempts)
    costs = [a.cost_usd for a in items if a.cost_usd is not None]
    return {
        "cost_usd": round(sum(costs), 6) if costs else None,
        "unknown_cost": sum(1 for a in items if a.cost_usd is None and a.ended_at is not None),
    }


def cost_text(cost_usd: float | None, unknown: int = 0) -> str:
    """`$1.2345`, `$1.2345 + 2 attempts of unknown cost`, or `unknown`."""
    if cost_usd is None:
        return "unknown"
    more = f" + {unknown} attempt{'s' * (unknown != 1)} of unknown cost" if unknown else ""
    return f"${cost_usd:.4f}{more}"


def counts_of(attempts: Iterable[Attempt]) -> dict[str, int]:
    """ "attempts" means one thing everywhere: the counted ones, as `list`, `show` and
    --max-attempts count them; "launches" is every agent run, uncounted ones (a merge
    conflict's re-run, a rate limit, an interrupt) included."""
    items = list(attempts)
    return {"attempts": sum(1 for a in items if a.counted), "launches": len(items)}


def summarise(attempts: Iterable[Attempt]) -> dict[str, Any]:
    """The numbers of one group of attempts; running attempts count but have no duration.
    A launch that used no attempt (a 429, an auth failure, no network) is no attempt and no
    failure: it shows under `outcomes` and `not_counted` only, as `show` counts it."""
    launches = list(attempts)
    items = [a for a in launches if a.counted]
    finished = [a for a in items if a.ended_at is not None]
    succeeded = [a for a in finished if a.outcome in SUCCESS]
    durations = [a.ended_at - a.started_at for a in finished if a.ended_at is not None]
    p50, p90 = percentile(durations, 50), percentile(durations, 90)
    return {
        **counts_of(launches),
        "running": len(items) - len(finished),
        "succeeded": len(succeeded),
        "failed": len(finished) - len(succeeded),
        "success_rate": round(len(succeeded) / len(finished), 4) if finished else None,
        "median_duration_s": None if p50 is None else round(p50, 3),
        "p90_duration_s": None if p90 is None else round(p90, 3),
        "total_duration_s": round(sum(durations), 3),
        "not_counted": len(launches) - len(items),
        "resolutions": sum(1 for a in launches if a.kind == "resolve"),  # by an agent
        **cost_of(launches),
        # part of cost_usd was computed from tokens with ralph.pricing, as each attempt recorded
        "cost_estimated": any(a.cost_usd is not None and a.cost_estimated for a in launches),
        "input_tokens": sum(a.input_tokens or 0 for a in launches),
        "output_tokens": sum(a.output_tokens or 0 for a in launches),
        "outcomes": dict(sorted(Counter(a.outcome or "running" for a in launches).items())),
    }


def attempt_stats(attempts: Sequence[Attempt], by: str = "agent") -> dict[str, Any]:
    """Per-group and overall numbers; groups sorted by key (days oldest first)."""
    if by not in GROUPINGS:
        raise errors.UsageError(
            f"cannot group by {by!r}", hint="use one of: " + ", ".join(GROUPINGS)
        )
    key: Callable[[Attempt], str] = {
        "agent": lambda a: a.agent,
        "model": model_of,
        "day": lambda a: day_of(a.started_at),
        "task": lambda a: a.task_id,
        "worker": lambda a: a.worker,
        "outcome": lambda a: a.outcome or "running",
        "kind": lambda a: a.kind,  # "task", or "resolve" (a merge conflict's resolution)
    }[by]
    groups: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in attempts:
        groups[key(attempt)].append(attempt)
    return {
        "by": by,
        "groups": [{"key": k, **summarise(groups[k])} for k in sorted(groups)],
        "total": summarise(attempts),
    }


def store_stats(
    store: SQLStore, by: str = "agent", *, since: float | None = None
) -> dict[str, Any]:
    """`attempt_stats` over the store's attempts (those started at or after `since`)."""
    attempts = store.attempts()
    if since is not None:
        attempts = [a for a in attempts if a.started_at >= since]
    return attempt_stats(attempts, by)
