"""Loop overhead per task: `ralph run` against the seed's bash loop and the bare-git floor.

The same no-op agent (a shell that reads the prompt and writes one file) does every task. On a
repo of 10 files and one of 10,000, in the same run, in interleaved chunks:
- `ralph run` drains the chunk's tasks (its start-up included; an empty run shows that part);
- examples/ralph.sh (the CLI, `git add -A && git commit`) drains the same number of tasks;
- the bare-git floor writes one file and runs `git status --porcelain && git add -A && git
  commit` per task (what a shell loop that commits "whatever the agent changed" must do);
- the agent alone is started per task, to subtract what the agent itself costs.
Targets: >= 5x faster than the bash loop; loop overhead <= 1.0x that floor (same run).
`--huge` adds a 100,000-file repository to see how the overhead grows.
`--profile` runs `ralph run` under cProfile on the big repo and shows where each task's time goes.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import ROOT, bench_env, build_repo, git, ms, ralph_argv, run_quiet, table, verdict

from ralph.store import open_store

AGENT = 'cat > /dev/null; echo done > "work/$RALPH_TASK_ID.txt"'
TARGET_SPEEDUP = 5.0
TARGET_FLOOR_RATIO = 1.0


def _clone(base: Path, dest: Path) -> Path:
    run_quiet(["git", "clone", "-q", str(base), str(dest)])
    for key, value in (("user.email", "bench@example.com"), ("user.name", "bench")):
        git(dest, "config", key, value)
    return dest


def _add_tasks(repo: Path, first: int, count: int) -> list[str]:
    store = open_store(repo / ".ralph" / "ralph.db")
    ids = [f"t{n:05d}" for n in range(first, first + count)]
    store.add_many([{"id": i, "title": f"write {i}"} for i in ids])
    store.close()
    return ids


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    run_quiet(argv, cwd=cwd, env=env)
    return time.perf_counter() - start


def _git_floor(repo: Path, ids: list[str]) -> float:
    start = time.perf_counter()
    for task in ids:
        path = f"work/{task}.txt"
        (repo / path).write_text("done\n")
        run_quiet(["git", "status", "--porcelain"], cwd=repo)
        run_quiet(["git", "add", "-A"], cwd=repo)
        run_quiet(["git", "commit", "-q", "-m", f"Complete {task}"], cwd=repo)
    return time.perf_counter() - start


def _agent_alone(scratch: Path, ids: list[str], env: dict[str, str]) -> float:
    (scratch / "work").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for task in ids:
        subprocess.run(
            ["sh", "-c", AGENT],
            input=b"the prompt\n" * 20,
            cwd=scratch,
            env={**env, "RALPH_TASK_ID": task},
            check=True,
        )
    return time.perf_counter() - start


def _ralph_run() -> list[str]:
    return [*ralph_argv(), "run", "--agent-cmd", f"sh -c '{AGENT}'", "--quiet", "--lease", "5m"]


def measure(
    base: Path, tmp: Path, tasks: int, bash_tasks: int, chunks: int, env: dict[str, str]
) -> dict:
    """Seconds spent by each contender, run in `chunks` interleaved chunks: `tasks` tasks each,
    but `bash_tasks` for the bash loop (three CLI starts per task: its per-task cost is flat)."""
    repos = {name: _clone(base, tmp / name) for name in ("ralph", "bash", "floor")}
    scratch = tmp / "agent"
    spent: dict[str, float] = defaultdict(float)
    per_chunk, bash_chunk = tasks // chunks, bash_tasks // chunks
    bash = ["bash", str(ROOT / "examples" / "ralph.sh")]
    bash_env = {**env, "AGENT_CMD": f"sh -c '{AGENT}'"}
    for chunk in range(chunks):
        first = chunk * per_chunk
        _add_tasks(repos["ralph"], first, per_chunk)
        _add_tasks(repos["bash"], chunk * bash_chunk, bash_chunk)
        spent["ralph"] += _timed(_ralph_run(), repos["ralph"], env)
        spent["ralph_start"] += _timed(_ralph_run(), repos["ralph"], env)  # empty queue
        spent["bash"] += _timed(bash, repos["bash"], bash_env)
        ids = [f"t{n:05d}" for n in range(first, first + per_chunk)]
        spent["floor"] += _git_floor(repos["floor"], ids)
        spent["agent"] += _agent_alone(scratch, ids, env)
    for name, count in (("ralph", per_chunk * chunks), ("bash", bash_chunk * chunks)):
        commits = int(git(repos[name], "rev-list", "--count", "HEAD")) - 1
        if commits != count:
            raise RuntimeError(f"{name} made {commits} commits for {count} tasks")
        store = open_store(repos[name] / ".ralph" / "ralph.db")
        left = store.status_counts()["open"]
        store.close()
        if left:
            raise RuntimeError(f"{name} left {left} tasks open")
    for repo in repos.values():
        shutil.rmtree(repo)
    spent["tasks"] = per_chunk * chunks
    spent["bash_tasks"] = bash_chunk * chunks
    return spent


# Workers run in threads, which cProfile does not follow: profile WorkerLoop.run from inside.
_PROFILED_RUN = """
import cProfile, sys
from ralph import worker as loop
from ralph.cli import main
out, argv = sys.argv[1], sys.argv[2:]
plain = loop.WorkerLoop.run
def profiled(self):
    prof = cProfile.Profile()
    try:
        prof.runcall(plain, self)
    finally:
        prof.dump_stats(out)
loop.WorkerLoop.run = profiled
main(argv)
"""


def profile(base: Path, tmp: Path, tasks: int, env: dict[str, str], top: int = 16) -> str:
    """cProfile of one worker's loop over `tasks` tasks: where each task's time goes."""
    repo = _clone(base, tmp / "profile")
    _add_tasks(repo, 0, tasks)
    out = tmp / "loop.prof"
    argv = [sys.executable, "-c", _PROFILED_RUN, str(out), *_ralph_run()[len(ralph_argv()) :]]
    run_quiet(argv, cwd=repo, env=env)
    stats = pstats.Stats(str(out))
    total = max(st[3] for st in stats.stats.values())
    rows = [["the whole loop (`WorkerLoop.run`)", 1, f"{total / tasks * 1000:.1f} ms"]]
    # ralph's own functions, GitPython and the child processes they wait on, called at least
    # once per task (what runs once is the start-up, measured in the table above)
    wanted = [
        (f, st)
        for f, st in stats.stats.items()
        if any(k in f[0] for k in ("/ralph/", "subprocess", "/git/", "threading", "sqlite"))
        and st[1] >= tasks
        and st[3] < total
    ]
    for (path, line, name), (_cc, calls, _tt, cum, _callers) in sorted(
        wanted, key=lambda kv: -kv[1][3]
    )[:top]:
        where = path.split("/ralph/")[-1] if "/ralph/" in path else "/".join(path.split("/")[-2:])
        rows.append([f"`{where}:{line} {name}`", calls, f"{cum / tasks * 1000:.1f} ms"])
    shutil.rmtree(repo)
    return table(
        f"Where a `ralph run` task's time goes (cProfile of the worker, {tasks} tasks, "
        f"{len(list(base.glob('src/*/*'))):,}-file repo)",
        ["function (cumulative)", "calls", "per task"],
        rows,
    )


def run(
    sizes: tuple[int, ...], tasks: int, bash_tasks: int, chunks: int, profile_tasks: int
) -> str:
    rows = []
    prof = ""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = bench_env(tmp)
        bin_dir = tmp / "bin"  # `ralph` for the bash loop: the console script, no shim
        bin_dir.mkdir()
        script = Path(sys.executable).parent / "ralph"
        if script.exists():
            (bin_dir / "ralph").symlink_to(script)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
        for files in sizes:
            base = build_repo(tmp / f"base-{files}", files)
            s = measure(base, tmp / f"runs-{files}", tasks, bash_tasks, chunks, env)
            n = s["tasks"]
            ralph_task = s["ralph"] / n  # its start-up included, spread over the chunk's tasks
            overhead = ralph_task - s["agent"] / n
            floor = s["floor"] / n
            bash_task = s["bash"] / s["bash_tasks"]
            speedup = bash_task / ralph_task
            rows.append(
                [
                    f"{files:,}",
                    n,
                    ms(ralph_task),
                    ms(s["ralph_start"] / chunks),
                    ms(s["agent"] / n),
                    ms(overhead),
                    ms(floor),
                    f"{overhead / floor:.2f}x",
                    f"{ms(bash_task)} ({int(s['bash_tasks'])} tasks)",
                    f"{speedup:.1f}x",
                    verdict(speedup >= TARGET_SPEEDUP),
                    verdict(overhead / floor <= TARGET_FLOOR_RATIO) if files >= 10_000 else "",
                ]
            )
            if files == max(sizes) and profile_tasks:
                prof = profile(base, tmp, profile_tasks, env)
            shutil.rmtree(base)
    out = table(
        f"Loop overhead per task (no-op agent writing one file; {chunks} interleaved chunks)",
        [
            "repo files",
            "tasks",
            "`ralph run` per task",
            "of which start-up (per run)",
            "agent alone",
            "loop overhead",
            "bare git status+add+commit",
            "overhead / bare git",
            "bash loop per task",
            "ralph vs bash",
            f"target >= {TARGET_SPEEDUP:.0f}x",
            f"target <= {TARGET_FLOOR_RATIO:.1f}x floor",
        ],
        rows,
    )
    return out + ("\n" + prof if prof else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="small repos, few tasks")
    parser.add_argument("--tasks", type=int, help="tasks per contender (default 200)")
    parser.add_argument("--bash-tasks", type=int, help="tasks for the bash loop (default 40)")
    parser.add_argument("--profile", type=int, metavar="N", help="profile N tasks (default 50)")
    parser.add_argument("--huge", action="store_true", help="also a 100,000-file repository")
    args = parser.parse_args()
    if args.tiny:
        print(run((10,), args.tasks or 2, args.bash_tasks or 2, 1, args.profile or 2))
    else:
        profile = 50 if args.profile is None else args.profile
        sizes = (10, 10_000, 100_000) if args.huge else (10, 10_000)
        print(run(sizes, args.tasks or 200, args.bash_tasks or 40, 2, profile))


if __name__ == "__main__":
    main()
