"""Parallel workers: `ralph run --workers 3` against one worker on the same 12 tasks, in one run.

The agent sleeps 1 s and writes one file, so the ideal speed-up is 3x; what is lost goes to the
per-task worktree, merge and polling overhead. Baselines in the same run: one worker in the
checkout, and one worker in a worktree (the parallel path with N = 1).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import bench_env, build_repo, git, ralph_argv, run_quiet, table

from ralph.store import open_store

AGENT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    sys.stdin.read()
    task = os.environ["RALPH_TASK_ID"]
    Path("work", task + ".txt").write_text(task + "\\n")
    time.sleep(float(os.environ.get("BENCH_SLEEP", "1")))
    """
)
MODES = [
    ("1 worker, in the checkout", []),
    ("1 worker, in a worktree", ["--names", "solo"]),
    ("3 workers, in worktrees", ["--workers", "3", "--no-live"]),
]


def one_run(tmp: Path, tasks: int, sleep: float, extra: list[str]) -> tuple[float, int]:
    repo = build_repo(tmp / "repo", 10)
    (tmp / "ralph.toml").write_text('poll = "0.2s"\n')
    with open_store(repo / ".ralph" / "ralph.db") as store:
        store.add_many([{"id": f"t{n:02d}", "title": f"task {n}"} for n in range(tasks)])
    agent = tmp / "agent.py"
    agent.write_text(AGENT)
    argv = [*ralph_argv(), "run", "-q", "--config", str(tmp / "ralph.toml"), *extra]
    argv += ["--agent-cmd", shlex.join([sys.executable, str(agent)])]
    start = time.perf_counter()
    run_quiet(argv, cwd=repo, env=bench_env(tmp, BENCH_SLEEP=str(sleep)))
    took = time.perf_counter() - start
    commits = len(git(repo, "rev-list", "HEAD").split()) - 1
    assert not git(repo, "rev-list", "--merges", "HEAD").strip(), "history is not linear"
    return took, commits


def run(tasks: int, sleep: float) -> str:
    rows = []
    base = None
    for label, extra in MODES:
        with tempfile.TemporaryDirectory() as tmp:
            took, commits = one_run(Path(tmp), tasks, sleep, extra)
        base = base or took
        rows.append(
            [
                label,
                tasks,
                commits,
                f"{took:.1f} s",
                f"{base / took:.2f}x",
                f"{tasks * sleep:.0f} s",
            ]
        )
    return table(
        f"Parallel workers ({tasks} tasks, agent sleeps {sleep:g} s; linear history checked)",
        ["mode", "tasks", "commits", "wall time", "speed-up vs 1 worker", "agent time in all"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="3 tasks, a 0.1 s agent")
    args = parser.parse_args()
    print(run(3, 0.1) if args.tiny else run(12, 1.0))


if __name__ == "__main__":
    main()
