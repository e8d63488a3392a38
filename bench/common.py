"""Shared helpers for the benchmarks: timing, medians, table output, store builders."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ralph.store import open_store
from ralph.store.base import SQLStore


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of `fn` in seconds over `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def build_store(path: Path, tasks: int, edges: int, *, seed: int = 7) -> SQLStore:
    """A SQLite store with `tasks` open tasks and `edges` random backward dependency edges."""
    rng = random.Random(seed)
    ids = [f"t{n:07d}" for n in range(tasks)]
    blockers: dict[int, set[str]] = {}
    for _ in range(edges):
        blocked = rng.randrange(1, tasks)
        blockers.setdefault(blocked, set()).add(ids[rng.randrange(0, blocked)])
    specs = [
        {
            "id": ids[n],
            "title": f"task {n}",
            "priority": rng.randrange(0, 5),
            "blocked_by": sorted(blockers.get(n, ())),
        }
        for n in range(tasks)
    ]
    store = open_store(path)
    for start in range(0, tasks, 50_000):
        store.add_many(specs[start : start + 50_000])
    return store


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain Markdown table (BENCHMARKS.md takes it as is)."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
