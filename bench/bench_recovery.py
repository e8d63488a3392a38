"""Crash recovery time: SIGKILL a `ralph run` worker holding a 2 s lease (renewed every lease/3)
while its agent works; time until another worker has claimed the task.

Two kinds of second worker, each in the same run: a process polling claim_next every 50 ms, and
a second `ralph run --watch` (the real loop, which sleeps until the next lease runs out).
Target: <= lease + 1 s, i.e. <= 1.5x the lease. Times come from the store's own event clock.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import bench_env, build_repo, git, ralph_argv, run_quiet, table, verdict

from ralph.store import open_store

LEASE = 2.0
POLLER = """
import sys, time
from ralph.store import open_store
store = open_store(sys.argv[1])
while store.claim_next("poller", lease=60) is None:
    time.sleep(0.05)
"""


def _wait(what: str, check, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def _kill_pids(pid_file: Path) -> None:
    if pid_file.exists():
        for line in pid_file.read_text().split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(line), signal.SIGKILL)


def one(tmp: Path, base: Path, env: dict[str, str], second: str, n: int) -> float:
    """Seconds from the SIGKILL of the holder to the second worker's claim."""
    db = tmp / f"rec-{second}-{n}.db"
    pids = tmp / f"agents-{second}-{n}.pids"
    agent = f"sh -c 'echo $$ >> {pids}; exec sleep 600'"
    store = open_store(db)
    task = store.add("the task a crashed worker held").id
    env = {**env, "RALPH_DB": str(db)}
    repos = []
    for name in ("a", "b"):
        repo = tmp / f"repo-{second}-{n}-{name}"
        run_quiet(["git", "clone", "-q", str(base), str(repo)])
        git(repo, "config", "user.email", "bench@example.com")
        git(repo, "config", "user.name", "bench")
        repos.append(repo)
    run = [*ralph_argv(), "run", "--agent-cmd", agent, "--lease", f"{LEASE:g}s", "--quiet"]
    holder = subprocess.Popen(
        [*run, "--worker", "holder", "--once"], cwd=repos[0], env=env, stderr=subprocess.DEVNULL
    )
    other = None
    try:
        _wait("the holder's claim", lambda: store.active_claim(task))
        if second == "poll":
            other = subprocess.Popen([sys.executable, "-c", POLLER, str(db)], env=env)
        else:
            other = subprocess.Popen(
                [*run, "--worker", "second", "--watch"],
                cwd=repos[1],
                env=env,
                stderr=subprocess.DEVNULL,
            )
        # Kill at a random point of the renewal cycle, once the other worker is up.
        time.sleep(1.0 + random.random() * LEASE / 3)
        killed = time.time()
        holder.kill()
        holder.wait()
        _kill_pids(pids)  # the holder's agent, in its own process group, outlives it
        claimed = _wait(
            "the second claim",
            lambda: [e for e in store.events(task_id=task, kind="claimed") if e.worker != "holder"],
        )
        return claimed[0].at - killed
    finally:
        for proc in (holder, other):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        _kill_pids(pids)
        store.close()


def run(reps: int) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = bench_env(tmp)
        base = build_repo(tmp / "base", 10)
        for second, label in (
            ("poll", "a process polling claim_next every 50 ms"),
            ("watch", "a second `ralph run --watch`"),
        ):
            times = [one(tmp, base, env, second, n) for n in range(reps)]
            med = statistics.median(times)
            rows.append(
                [
                    label,
                    reps,
                    f"{med:.2f} s",
                    f"{min(times):.2f} – {max(times):.2f} s",
                    f"{med / LEASE:.2f}x",
                    verdict(max(times) <= LEASE + 1.0),
                ]
            )
    return table(
        f"Crash recovery (SIGKILL of a `ralph run` holding a {LEASE:g} s lease)",
        [
            "second worker",
            "runs",
            "median kill → claimed",
            "min – max",
            "vs lease",
            f"target <= {LEASE + 1:g} s (all runs)",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="one run of each")
    parser.add_argument("--reps", type=int, help="runs of each kind (default 5)")
    args = parser.parse_args()
    print(run(args.reps or (1 if args.tiny else 5)))


if __name__ == "__main__":
    main()
