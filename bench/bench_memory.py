"""Peak RSS of one worker (`ralph run --once`) whose agent prints 100 MB, against the same worker
whose agent prints 1 KB, in the same run; and of `ralph run --workers 8` whose 8 agents print
100 MB each at once. Target: <= 80 MB.

The worker's own peak is read from /proc/<pid>/status (VmHWM) while it runs; the agent (a small
streaming writer) is not counted. A third row prints the 100 MB as one line without a newline.
Without the sandbox: the agent script lives outside the repository, and the output's path
through ralph is the same either way.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import bench_env, build_repo, git, ralph_argv, run_quiet, table, verdict

from ralph.store import open_store

TARGET_MB = 80.0
AGENT = """
import os, sys
total, newline = int(sys.argv[1]), sys.argv[2] == "lines"
chunk = ("x" * 1023 + "\\n") if newline else "x" * 1024
sys.stdin.read()
for _ in range(total // 1024):
    sys.stdout.write(chunk)
sys.stdout.flush()
open(os.path.join("work", os.environ["RALPH_TASK_ID"] + ".txt"), "w").write("done\\n")
"""


def _peak_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def agent_alone(tmp: Path, size: int, shape: str) -> float:
    """Seconds the agent takes printing into a file, without ralph."""
    (tmp / "alone" / "work").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(tmp / "alone" / "out.txt", "wb") as out:
        subprocess.run(
            [sys.executable, str(tmp / "agent.py"), str(size), shape],
            input=b"",
            stdout=out,
            cwd=tmp / "alone",
            env={"RALPH_TASK_ID": "alone", "PATH": "/usr/bin:/bin"},
            check=True,
        )
    return time.perf_counter() - start


def worker_peak(
    tmp: Path, base: Path, env: dict[str, str], size: int, shape: str, workers: int = 1
) -> tuple[float, float]:
    """Peak RSS in MB of `ralph run --once` while its agent prints `size` bytes, and seconds;
    with `workers` > 1, of `ralph run --workers N` on N such tasks at once."""
    repo = tmp / f"repo-{size}-{shape}-{workers}"
    run_quiet(["git", "clone", "-q", str(base), str(repo)])
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    store = open_store(repo / ".ralph" / "ralph.db")
    ids = ["print"] if workers == 1 else [f"print{n}" for n in range(workers)]
    store.add_many([{"id": task, "title": "print a lot"} for task in ids])
    store.close()
    agent = tmp / "agent.py"
    agent.write_text(AGENT)
    argv = [*ralph_argv(), "run", "--quiet", "--no-sandbox"]  # the agent lives outside the repo
    argv += ["--once"] if workers == 1 else ["--workers", str(workers), "--no-live"]
    argv += ["--agent-cmd", f"{sys.executable} {agent} {size} {shape}"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=repo, env=env, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _peak_kb(proc.pid) or 0)
        time.sleep(0.01)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"ralph run exited {proc.returncode}: {stderr[-1000:]}")
    store = open_store(repo / ".ralph" / "ralph.db")
    status = {store.get(task).status for task in ids}
    store.close()
    if status != {"done"}:
        raise RuntimeError(f"the tasks ended {status}, not done")
    shutil.rmtree(repo)  # the attempts' output: up to 800 MB
    return peak / 1024, wall


def run(big: int, workers: int = 8) -> str:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = bench_env(tmp)
        base = build_repo(tmp / "base", 10)
        rows = []
        small = 0.0
        for label, size, shape, n in (
            ("1 KB (baseline)", 1024, "lines", 1),
            (f"{big / 1e6:g} MB in 1 KB lines", big, "lines", 1),
            (f"{big / 1e6:g} MB in one line, no newline", big, "one-line", 1),
            (f"`--workers {workers}`: {big / 1e6:g} MB each in 1 KB lines", big, "lines", workers),
        ):
            peak, wall = worker_peak(tmp, base, env, size, shape, n)
            alone = agent_alone(tmp, size, shape)
            small = small or peak
            rows.append(
                [
                    label,
                    f"{peak:.1f} MB",
                    f"{peak / small:.2f}x",
                    verdict(peak <= TARGET_MB) if size > 1024 else "",
                    f"{wall:.1f} s",
                    f"{alone:.1f} s",
                ]
            )
    return table(
        "Worker memory (`ralph run --once` or `--workers N`, peak RSS of the ralph process)",
        [
            "agent prints",
            "peak RSS",
            "vs 1 KB agent",
            f"target <= {TARGET_MB:g} MB",
            "worker wall time",
            "agent alone, into a file",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="1 MB, 2 workers (not 100 MB, 8)")
    args = parser.parse_args()
    print(run(1_000_000, 2) if args.tiny else run(100_000_000))


if __name__ == "__main__":
    main()
