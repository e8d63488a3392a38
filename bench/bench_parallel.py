"""Parallel workers: the per-task overhead of `ralph run --workers 3` and `--workers 8` against
one worker (`ralph run`, in the checkout) on the same trivial tasks, in the same run; and each
worker's start-up (its worktree made) when 8 start at once.

Overhead per task = wall time / tasks - agent time per task / workers: what a task costs beyond
its agent, with the agents ideally in parallel. The agent writes one file and exits (its time
alone is measured too), so nearly all of it is ralph's: worktree, store, landing, waiting.
Every mode starts from a fresh clone; the modes are interleaved, `--reps` times, and the ratios
are of medians (this machine is noisy). Sandbox on and off, each against its own one-worker run.
Target: 3 workers <= 1.2x one worker's per-task overhead; start-up <= 150 ms a worker.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import bench_env, build_repo, git, ms, ralph_argv, run_quiet, table, verdict

from ralph.sandbox import bwrap
from ralph.store import open_store
from ralph.workspace.worktree import Worktrees

RATIO_TARGET = 1.2
START_TARGET_MS = 150.0
AGENT = 'printf "%s\\n" "$RALPH_TASK_ID" > "work/$RALPH_TASK_ID.txt"'


def _clone(base: Path, repo: Path) -> Path:
    run_quiet(["git", "clone", "-q", str(base), str(repo)])
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    return repo


def one_run(base: Path, tmp: Path, tasks: int, workers: int, sandbox: bool, env: dict) -> float:
    """Wall seconds of one `ralph run` draining `tasks` tasks from a fresh clone (checked: one
    commit per task, linear history, every task done)."""
    repo = _clone(base, tmp / "repo")
    with open_store(repo / ".ralph" / "ralph.db") as store:
        store.add_many([{"id": f"t{n:02d}", "title": f"task {n}"} for n in range(tasks)])
    argv = [*ralph_argv(), "run", "-q", "--no-live", "--sandbox" if sandbox else "--no-sandbox"]
    if workers > 1:
        argv += ["--workers", str(workers)]
    argv += ["--agent-cmd", shlex.join(["sh", "-c", AGENT])]
    start = time.perf_counter()
    run_quiet(argv, cwd=repo, env=env)
    took = time.perf_counter() - start
    commits = int(git(repo, "rev-list", "--count", "HEAD")) - 1
    assert commits == tasks, f"{commits} commits for {tasks} tasks"
    assert not git(repo, "rev-list", "--merges", "HEAD").strip(), "history is not linear"
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert all(t.status == "done" for t in store.list()), "a task is not done"
    shutil.rmtree(repo)
    return took


def agent_alone(tmp: Path, tasks: int) -> float:
    """Seconds per task the agent takes alone, run as ralph runs it (argv, no shell of ours)."""
    (tmp / "alone" / "work").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for n in range(tasks):
        subprocess.run(
            ["sh", "-c", AGENT],
            cwd=tmp / "alone",
            env={"RALPH_TASK_ID": f"t{n:02d}", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdin=subprocess.DEVNULL,
            check=True,
        )
    return (time.perf_counter() - start) / tasks


def start_up(base: Path, tmp: Path, workers: int) -> float:
    """Seconds per worker for `workers` worktrees made at once on a fresh clone (what a
    parallel run does before its workers' first tasks)."""
    repo = _clone(base, tmp / "startup")
    ralph_dir = repo / ".ralph"
    ralph_dir.mkdir()
    (ralph_dir / ".gitignore").write_text("*\n")
    names = [f"worker-{n}" for n in range(1, workers + 1)]
    start = time.perf_counter()
    worktrees = Worktrees(repo, ralph_dir=ralph_dir)
    made = worktrees.start(names)
    took = time.perf_counter() - start
    assert all((path / ".git").exists() for path in made.values()), "a worktree is missing"
    worktrees.close()
    shutil.rmtree(repo)
    return took / workers


def run(tasks: int, reps: int, counts: list[int], files: int) -> str:
    sandboxes = [False]
    exe, why = bwrap.probe()
    if why is None:
        sandboxes.append(True)
    modes = [(sb, w) for sb in sandboxes for w in [1, *counts]]
    walls: dict[tuple[bool, int], list[float]] = {m: [] for m in modes}
    starts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="ralph-bench-parallel-") as tmp_name:
        tmp = Path(tmp_name)
        env = bench_env(tmp)
        env.pop("RALPH_SANDBOX", None)
        base = build_repo(tmp / "base", files)
        one_run(base, tmp, 1, 1, False, env)  # warm-up: pyc files, page cache
        agent = agent_alone(tmp, tasks)
        for r in range(reps):
            order = modes[r % len(modes) :] + modes[: r % len(modes)]
            for mode in order:
                walls[mode].append(one_run(base, tmp, tasks, mode[1], mode[0], env))
            starts.append(start_up(base, tmp, max(counts)))
    rows = []
    for sandbox, workers in modes:
        wall = statistics.median(walls[(sandbox, workers)])
        over = wall / tasks - agent / workers
        one = statistics.median(walls[(sandbox, 1)]) / tasks - agent
        ratio = over / one
        target = verdict(ratio <= RATIO_TARGET) if workers == 3 else ""
        rows.append(
            [
                "on" if sandbox else "off",
                workers,
                f"{wall:.2f} s",
                ms(over),
                f"{ratio:.2f}x",
                target,
                f"{min(walls[(sandbox, workers)]):.2f}-{max(walls[(sandbox, workers)]):.2f} s",
            ]
        )
    start = statistics.median(starts)
    rows.append(
        [
            "",
            f"start-up, {max(counts)} at once",
            "",
            f"{ms(start)} a worker",
            "",
            f"<= {START_TARGET_MS:.0f} ms: {verdict(start * 1000 <= START_TARGET_MS)}",
            f"{ms(min(starts))}-{ms(max(starts))}",
        ]
    )
    sb = f"; bwrap: {exe}" if why is None else f"; no sandbox here: {why}"
    return table(
        f"Parallel workers ({tasks} trivial tasks, {files} files, median of {reps} interleaved "
        f"reps; agent alone {ms(agent)} a task{sb})",
        [
            "sandbox",
            "workers",
            "wall time",
            "overhead per task",
            "vs 1 worker",
            f"target <= {RATIO_TARGET}x",
            "range",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="4 tasks, 1 rep, 1 and 3 workers")
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--files", type=int, default=10)
    args = parser.parse_args()
    if args.tiny:
        print(run(4, 1, [3], 10))
    else:
        print(run(args.tasks, args.reps, [3, 8], args.files))


if __name__ == "__main__":
    main()
