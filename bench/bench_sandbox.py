"""Sandbox overhead per attempt: the same attempt with and without the bubblewrap sandbox.

Two clones of one repository; in each round `ralph run` drains a chunk of tasks in one clone
with `--sandbox` and the same number in the other with `--no-sandbox`, the order alternating
from round to round (same machine, same minute). The agent is a tiny shell (reads its prompt,
writes one file), so what differs is the sandbox alone: the per-attempt git view, bwrap's start,
reading the agent's HEAD back, the filtered environment. The run's start-up is shared by the
chunk's tasks. Reported: the median over rounds of the per-task difference, and the ratio.
Target: at most 50 ms per attempt. The network gate ("allow") is measured by
bench/bench_sandbox_net.py; this agent has no host to reach, so it runs with no network.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import bench_env, build_repo, git, ms, ralph_argv, run_quiet, table, verdict

from ralph.sandbox import bwrap
from ralph.store import open_store

AGENT = 'cat > /dev/null; mkdir -p work; echo done > "work/$RALPH_TASK_ID.txt"'
TARGET_MS = 50.0


def _clone(base: Path, dest: Path) -> Path:
    run_quiet(["git", "clone", "-q", str(base), str(dest)])
    for key, value in (("user.email", "bench@example.com"), ("user.name", "bench")):
        git(dest, "config", key, value)
    return dest


def _add(repo: Path, first: int, count: int) -> None:
    store = open_store(repo / ".ralph" / "ralph.db")
    store.add_many([{"id": f"t{n:05d}", "title": f"t{n}"} for n in range(first, first + count)])
    store.close()


def _drain(repo: Path, flag: str, env: dict[str, str]) -> float:
    argv = [*ralph_argv(), "run", flag, "--no-live", "--quiet"]
    argv += ["--agent-cmd", shlex.join(["sh", "-c", AGENT])]
    start = time.perf_counter()
    run_quiet(argv, cwd=repo, env=env)
    return time.perf_counter() - start


def run(files: int, rounds: int, chunk: int) -> str:
    with tempfile.TemporaryDirectory(prefix="ralph-bench-sandbox-") as tmp_name:
        tmp = Path(tmp_name)
        env = bench_env(tmp)
        env.pop("RALPH_SANDBOX", None)
        base = build_repo(tmp / "base", files)
        repos = {"--sandbox": _clone(base, tmp / "on"), "--no-sandbox": _clone(base, tmp / "off")}
        for repo in repos.values():  # one warm-up task each: the store, caches, pyc files
            _add(repo, 0, 1)
            _drain(repo, "--no-sandbox", env)
        per_task: dict[str, list[float]] = {flag: [] for flag in repos}
        diffs: list[float] = []
        for r in range(rounds):
            order = list(repos) if r % 2 == 0 else list(reversed(repos))
            took = {}
            for flag in order:
                _add(repos[flag], 1 + r * chunk, chunk)
                took[flag] = _drain(repos[flag], flag, env) / chunk
                per_task[flag].append(took[flag])
            diffs.append(took["--sandbox"] - took["--no-sandbox"])
        for repo in repos.values():
            landed = int(git(repo, "rev-list", "--count", "main"))
            assert landed == 2 + rounds * chunk, f"{repo}: {landed} commits"
        on, off = (
            statistics.median(per_task["--sandbox"]),
            statistics.median(per_task["--no-sandbox"]),
        )
        added = statistics.median(diffs)
        rows = [
            ["`ralph run --no-sandbox`, per task", ms(off), ""],
            ["`ralph run --sandbox`, per task", ms(on), ""],
            ["added by the sandbox (median of the rounds' differences)", ms(added),
             f"target <= {TARGET_MS:.0f} ms: {verdict(added * 1000 <= TARGET_MS)}"],
            ["ratio sandboxed / unsandboxed", f"{on / off:.2f}x", ""],
        ]  # fmt: skip
        exe, _ = bwrap.probe()
        title = (
            f"Sandbox overhead per attempt ({files} files, {rounds} rounds of {chunk} tasks "
            f"each way, interleaved; bwrap: {exe})"
        )
        return table(title, ["what", "time", "note"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a small repo, few rounds")
    args = parser.parse_args()
    _, why = bwrap.probe()
    if why is not None:
        print(f"### Sandbox overhead per attempt\n\nThe sandbox cannot run here ({why}).")
        return
    if args.tiny:
        print(run(files=10, rounds=2, chunk=2))
    else:
        print(run(files=1000, rounds=9, chunk=10))


if __name__ == "__main__":
    sys.exit(main())
