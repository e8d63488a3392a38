"""The benchmarks still run: `python bench/run_all.py --tiny`, every section present.

Benchmarks are not timed tests: nothing here looks at the numbers. Each section runs as its own
test (`run_all.py --tiny --only SCRIPT`), so pytest-xdist spreads them over its workers instead
of one test running them all in a row.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each section of run_all.py must print: its heading and its tables.
HEADINGS = {
    "bench_cli.py": ["## Hot CLI start", "### Hot CLI start"],
    "bench_ready.py": ["## Ready query", "### Ready query"],
    "bench_claims.py": ["## Claim throughput", "### Claim throughput (SQLite"],
    "bench_loop.py": [
        "## Loop overhead per task",
        "### Loop overhead per task",
        "### Where a `ralph run` task's time goes",
    ],
    "bench_lease.py": ["## Lease renewal under contention", "### Lease renewal under contention"],
    "bench_recovery.py": ["## Crash recovery", "### Crash recovery"],
    "bench_memory.py": ["## Worker memory", "### Worker memory", "| `--workers 2`: 1 MB each"],
    "bench_parallel.py": [
        "## Parallel workers",
        "### Parallel workers",
        "| off | 1 |",
        "| off | 3 |",
        "| start-up, 3 at once |",
    ],
    "bench_chaos.py": ["## Chaos"],
    "bench_partition.py": ["## Partitions", "### Partitions"],
    "bench_web.py": ["## Web dashboard"],
    "bench_sandbox.py": ["## Sandbox overhead", "### Sandbox overhead per attempt"],
}


def test_every_section_of_run_all_is_smoke_tested() -> None:
    listed = re.findall(
        r'^\s*\("[^"]+", "(bench_\w+\.py)"', (ROOT / "bench" / "run_all.py").read_text(), re.M
    )
    assert listed and sorted(listed) == sorted(HEADINGS)


@pytest.mark.slow  # a few sections take a minute at their tiny size
@pytest.mark.parametrize("script", list(HEADINGS))
def test_tiny_benchmark_section_runs_and_prints_its_tables(script: str, tmp_path: Path) -> None:
    # A short TMPDIR: chromium's singleton socket lives under it, and a Unix socket path may
    # not exceed 107 bytes (pytest-xdist's per-worker folders made it 112).
    tmp = Path(tempfile.mkdtemp(prefix="rb-"))
    env = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp)}
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "run_all.py"), "--tiny", "--only", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for heading in HEADINGS[script]:
        assert heading in proc.stdout, f"{heading!r} missing from:\n{proc.stdout}"
    assert "failed" not in proc.stdout
    assert "nproc" in proc.stdout and "SQLite" in proc.stdout
