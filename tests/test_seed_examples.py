"""The parallel-workers examples run as real processes; the event log proves exactly-once.

Every task must be claimed and completed exactly once, and no process may ever see SQLite's
"database is locked" (the store's busy timeout and BEGIN IMMEDIATE are meant to absorb it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ralph import open_store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIMEOUT = 900  # only so a hung run fails instead of blocking the suite


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose `ralph` is the installed console script (or `python -m ralph`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = Path(sys.executable).parent / "ralph"
    if not script.exists():
        script = bin_dir / "ralph"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ralph "$@"\n')
        script.chmod(0o755)
    else:
        (bin_dir / "ralph").symlink_to(script)
    env = {k: v for k, v in os.environ.items() if k != "RALPH_DB"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", HOME=str(tmp_path), **extra)
    return env


def _assert_each_once(db: Path, expected: int, *kinds: str) -> None:
    with open_store(db) as store:
        tasks = store.list()
        assert len(tasks) == expected
        assert {t.status for t in tasks} == {"done"}
        for kind in kinds:
            counts = Counter(e.task_id for e in store.events(kind=kind))
            assert {t.id: counts[t.id] for t in tasks} == {t.id: 1 for t in tasks}, kind


needs_jq = pytest.mark.skipif(shutil.which("jq") is None, reason="the shell examples need jq")


@pytest.mark.slow
@needs_jq
def test_parallel_workers_script_claims_and_completes_each_task_once(tmp_path: Path) -> None:
    db = tmp_path / "ralph.db"
    env = _env(tmp_path, RALPH_DB=str(db), TASKS="12", WORKERS="3", WORK_SECONDS="0")
    run = subprocess.run(
        ["bash", str(EXAMPLES / "parallel_workers.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    assert "All 12 tasks done." in run.stdout
    assert run.stdout.count("] No more tasks") == 3
    assert "locked" not in run.stderr
    _assert_each_once(db, 12, "claimed", "done")


@needs_jq
def test_parallel_workers_script_makes_its_own_scratch_repo(tmp_path: Path) -> None:
    env = _env(tmp_path, TASKS="2", WORKERS="2", WORK_SECONDS="0")
    run = subprocess.run(
        ["bash", str(EXAMPLES / "parallel_workers.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    assert "All 2 tasks done." in run.stdout
    assert not (tmp_path / ".ralph").exists()  # nothing written where it was started


def test_programmatic_example_runs_three_threads_to_completion(tmp_path: Path) -> None:
    db = tmp_path / "ralph.db"
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "programmatic.py"), str(db)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    assert "All workers finished" in run.stdout
    _assert_each_once(db, 9, "claimed", "done")


def test_patterns_example_shows_contention_renewal_and_recovery(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "patterns.py")],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    assert "already claimed by worker-alpha, moving on" in run.stdout
    assert "Crashed worker's task is ready again" in run.stdout


TASKS_8 = 6

# The seed's loop verbatim (release, then done), except that stderr is kept for inspection.
SEED_LOOP = r"""
WORKER="$1"
while true; do
  TASK=$(ralph ready --json --limit 1 | jq -r '.[0].id')
  [ -z "$TASK" ] || [ "$TASK" = "null" ] && break
  if ralph claim "$TASK" "$WORKER" >/dev/null; then
    ralph claim:release "$TASK" "$WORKER"
    ralph done "$TASK" >/dev/null
    echo "[$WORKER] Completed $TASK"
  fi
done
"""


@needs_jq
def test_eight_cli_processes_complete_each_task_once_without_lock_errors(tmp_path: Path) -> None:
    # Every idle worker races for the same first ready task, so each task costs about 18 CLI
    # starts; 6 tasks keep the test to seconds while every claim is contended eight ways.
    db = tmp_path / "ralph.db"
    with open_store(db) as store:
        store.add_many([{"title": f"T{n}"} for n in range(1, TASKS_8 + 1)])
    env = _env(tmp_path, RALPH_DB=str(db))
    procs = [
        subprocess.Popen(
            ["bash", "-c", SEED_LOOP, "loop", f"worker-{n}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(1, 9)
    ]
    outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    stderr = "".join(err for _, err in outputs)
    assert all(p.returncode == 0 for p in procs), stderr
    assert "locked" not in stderr and "Traceback" not in stderr, stderr
    # A claim race loses with "already claimed"; the seed's release-then-done window may let a
    # second worker claim a released task, whose own release/done then fails cleanly.
    for line in stderr.splitlines():
        assert line.startswith("error: ") and (
            "already claimed" in line or "cannot release" in line or "is done" in line
        ), line
    _assert_each_once(db, TASKS_8, "done")
