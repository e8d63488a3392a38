"""Run every benchmark and print one Markdown report: `python bench/run_all.py [--tiny]`.

Each benchmark runs as its own process (as a user would run it) and prints its tables; this
script adds the machine (date, nproc, load, Python, SQLite) and each section's wall time.
PostgreSQL rows use a throwaway server from tests/pgserver.py when one can be started.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (section title, script, extra arguments at full size)
SECTIONS = [
    ("Hot CLI start", "bench_cli.py", []),
    ("Ready query", "bench_ready.py", []),
    ("Claim throughput", "bench_claims.py", ["--profile", "--pg", "auto"]),
    ("Loop overhead per task", "bench_loop.py", []),
    ("Lease renewal under contention", "bench_lease.py", []),
    ("Crash recovery", "bench_recovery.py", []),
    ("Worker memory", "bench_memory.py", []),
    ("Parallel workers", "bench_parallel.py", []),
    ("Chaos", "bench_chaos.py", ["--pg", "auto"]),
    ("Partitions", "bench_partition.py", []),
    ("Web dashboard", "bench_web.py", []),
    ("Sandbox overhead", "bench_sandbox.py", []),
]


def machine() -> str:
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"- machine: {platform.machine()}, nproc {os.cpu_count()}, load average {load} "
        "(1/5/15 min) at start\n"
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.system()} {platform.release()}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="every benchmark at its tiny size")
    parser.add_argument("--only", nargs="*", help="run just these scripts (e.g. bench_cli.py)")
    parser.add_argument("--before", metavar="REF", help="claims before/after: ralph as of REF")
    args = parser.parse_args()
    print(f"# ralph benchmarks{' (tiny)' if args.tiny else ''}\n\n{machine()}", flush=True)
    failed = []
    started = time.perf_counter()
    for title, script, extra in SECTIONS:
        if args.only and script not in args.only:
            continue
        argv = [sys.executable, str(HERE / script)]
        argv += ["--tiny"] if args.tiny else extra
        if args.before and script == "bench_claims.py":
            argv += ["--before", args.before]
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=HERE, capture_output=True, text=True)
        took = time.perf_counter() - t0
        print(f"## {title}\n\n`python bench/{' '.join([script, *argv[2:]])}` ({took:.0f} s)\n")
        print(proc.stdout.rstrip() + "\n", flush=True)
        if proc.returncode != 0:
            failed.append(script)
            print(
                f"**{script} failed (exit {proc.returncode}):**\n\n```\n"
                f"{proc.stderr.strip()[-3000:]}\n```\n",
                flush=True,
            )
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"All sections: {time.perf_counter() - started:.0f} s; load average at the end {load}.")
    if failed:
        print("Failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
