"""Many worker processes racing over one SQLite store: every task claimed once and done once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ralph.errors import AlreadyClaimedError
from ralph.store import open_store

SCRIPT = Path(__file__).parent / "scripts" / "store_worker.py"
PROCESSES = 16
TASKS = 2000


def test_sixteen_processes_claim_and_finish_every_task_exactly_once(tmp_path):
    db = tmp_path / "ralph.db"
    gofile = tmp_path / "go"
    with open_store(db) as store:
        ids = {t.id for t in store.add_many([{"title": f"task {n}"} for n in range(TASKS)])}
    workers = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "race", str(db), f"w{n:02d}", str(gofile)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    try:
        for proc in workers:  # all imported and connected: start them together
            assert "ready" in proc.stdout.readline()
        gofile.touch()
        outputs = [proc.communicate(timeout=120) for proc in workers]
    finally:
        for proc in workers:
            proc.kill()
    assert [proc.returncode for proc in workers] == [0] * PROCESSES, [o[1] for o in outputs]
    reports = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    assert [r["errors"] for r in reports] == [[]] * PROCESSES
    assert sum(r["claims"] for r in reports) == TASKS

    with open_store(db) as store:
        claimed = store.events(kind="claimed")
        done = store.events(kind="done")
        released = [e for e in store.events(kind="released") if e.data.get("reason") == "done"]
        assert store.status_counts()["done"] == TASKS
        assert store.claims() == []
    assert Counter(e.task_id for e in claimed) == Counter(ids)  # each claimed exactly once
    assert Counter(e.task_id for e in done) == Counter(ids)  # each done exactly once
    # each task was finished by the worker holding its one claim, with that claim's token
    assert {e.task_id: (e.worker, e.token) for e in released} == {
        e.task_id: (e.worker, e.token) for e in claimed
    }
    busy = [r for r in reports if r["claims"]]
    seconds = max(r["end"] for r in busy) - min(r["start"] for r in busy)
    print(
        f"\n{PROCESSES} processes, {TASKS} tasks: {TASKS / seconds:.0f} claims/s "
        f"(claim_next + done each), {len(busy)} processes got work, "
        f"per process {sorted(r['claims'] for r in reports)}"
    )


def test_claim_held_by_another_process_is_refused_with_the_holders_name(tmp_path):
    db = tmp_path / "ralph.db"
    with open_store(db) as store:
        task = store.add("contended")
    holder = subprocess.Popen(
        [sys.executable, str(SCRIPT), "hold", str(db), task.id, "first", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        held = json.loads(holder.stdout.readline())
        with open_store(db) as store:
            with pytest.raises(AlreadyClaimedError) as info:
                store.claim(task.id, "second")
            assert info.value.holder == "first"
            assert store.claim_next("second") is None
            assert store.active_claim(task.id).token == held["token"]
    finally:
        holder.kill()
        holder.wait(timeout=30)
