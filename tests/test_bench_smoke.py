"""The benchmarks still run: `python bench/run_all.py --tiny` once, every section present.

Benchmarks are not timed tests: nothing here looks at the numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SECTIONS = [
    "## Hot CLI start",
    "## Ready query",
    "## Claim throughput",
    "## Loop overhead per task",
    "## Lease renewal under contention",
    "## Crash recovery",
    "## Worker memory",
    "## Parallel workers",
]
TABLES = [
    "### Hot CLI start",
    "### Ready query",
    "### Claim throughput (SQLite",
    "### Loop overhead per task",
    "### Where a `ralph run` task's time goes",
    "### Lease renewal under contention",
    "### Crash recovery",
    "### Worker memory",
    "### Parallel workers",
]


@pytest.mark.slow  # every benchmark once, chromium included
def test_tiny_benchmarks_run_and_print_every_section(tmp_path: Path) -> None:
    # A short TMPDIR: chromium's singleton socket lives under it, and a Unix socket path may
    # not exceed 107 bytes (pytest-xdist's per-worker folders made it 112).
    tmp = Path(tempfile.mkdtemp(prefix="rb-"))
    env = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--tiny"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for heading in SECTIONS + TABLES:
        assert heading in proc.stdout, f"{heading!r} missing from:\n{proc.stdout}"
    assert "failed" not in proc.stdout
    assert "nproc" in proc.stdout and "SQLite" in proc.stdout
