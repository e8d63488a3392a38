"""Shared helpers for the benchmarks: timing, medians, table output, store and repo builders."""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ralph.store import open_store
from ralph.store.base import SQLStore

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of `fn` in seconds over `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def ralph_argv() -> list[str]:
    """How to start the CLI as a user does: the installed console script, else `-m ralph`."""
    script = Path(sys.executable).parent / "ralph"
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "ralph"]


def bench_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment for timed child processes.

    Machines that set PYTHONDONTWRITEBYTECODE=1 would make an editable install compile ralph
    from source at every start, and that variable also stops writes under PYTHONPYCACHEPREFIX:
    drop it and keep .pyc files in a private prefix for the whole run (the baseline gets the
    same environment, so both sides start alike).
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    env["HOME"] = str(tmp / "home")
    (tmp / "home").mkdir(exist_ok=True)
    env.update(extra)
    return env


def run_quiet(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """Run a command, failing loudly (with its stderr) if it fails: a benchmark that silently
    times an error message measures nothing."""
    proc = subprocess.run(argv, capture_output=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace')[-2000:]}"
        )
    return proc


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


def git(repo: Path, *args: str) -> str:
    return run_quiet(["git", "-C", str(repo), *args]).stdout.decode()


def build_repo(path: Path, files: int) -> Path:
    """A git repository with `files` committed files spread over 100-file folders."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "bench@example.com")
    git(path, "config", "user.name", "bench")
    git(path, "config", "commit.gpgsign", "false")
    for n in range(files):
        folder = path / "src" / f"d{n // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:05d}.txt").write_text(f"file {n}\n")
    (path / "work").mkdir()
    (path / "work" / ".keep").write_text("")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain Markdown table (BENCHMARKS.md takes it as is)."""
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
