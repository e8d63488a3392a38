"""The sweeper: expired leases and dead workers' claims go back to the queue, on every backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from ralph.store import open_store
from ralph.sweeper import Sweeper, sweep

HOUR = 3600.0


def test_claims_whose_lease_ran_out_are_expired_and_ready_again(store, clock) -> None:
    task = store.add("lease runs out")
    store.claim(task.id, "w1", lease=60)
    clock.advance(59)
    assert not sweep(store)
    clock.advance(2)

    found = sweep(store)

    assert [c.task_id for c in found.expired] == [task.id] and found.dead == {}
    assert [t.id for t in store.ready()] == [task.id]
    assert [e.kind for e in store.events(task_id=task.id)][-1] == "expired"


def test_claims_of_worker_silent_for_three_intervals_are_expired_long_before_lease(
    store, clock
) -> None:
    task = store.add("held by a worker that dies")
    worker = store.register_worker("w1", heartbeat_interval=10)
    store.claim(task.id, "w1", lease=HOUR)
    clock.advance(15)
    store.heartbeat(worker.id, status="busy", current_task=task.id)
    clock.advance(30)  # 30 s since the last heartbeat: not yet more than three times 10 s
    assert not sweep(store)
    clock.advance(0.5)

    found = sweep(store)

    assert list(found.dead) == ["w1"]
    assert [c.task_id for c in found.dead["w1"]] == [task.id]
    assert store.active_claim(task.id) is None
    assert [t.id for t in store.ready()] == [task.id]
    assert store.claim(task.id, "w2", lease=60).worker == "w2"


def test_heartbeating_worker_and_unregistered_holder_keep_their_claims(store, clock) -> None:
    alive, manual = store.add("alive"), store.add("claimed from the CLI")
    worker = store.register_worker("alive", heartbeat_interval=10)
    store.claim(alive.id, "alive", lease=HOUR)
    store.claim(manual.id, "someone", lease=HOUR)  # no worker row: only its lease can end it
    for _ in range(10):
        clock.advance(9)
        store.heartbeat(worker.id)
        assert not sweep(store)
    assert {c.task_id for c in store.claims()} == {alive.id, manual.id}


def test_stopped_worker_still_holding_a_claim_loses_it(store, clock) -> None:
    task = store.add("left behind")
    store.register_worker("w1", heartbeat_interval=10)
    store.claim(task.id, "w1", lease=HOUR)
    store.stop_worker("w1", stopped=True)

    assert [c.task_id for c in sweep(store).dead["w1"]] == [task.id]


def test_task_whose_workers_keep_dying_becomes_failed_after_max_expiries(store, clock) -> None:
    store.max_expiries = 2
    task = store.add("poison pill")
    for n in (1, 2):
        store.register_worker(f"w{n}", heartbeat_interval=5)
        store.claim(task.id, f"w{n}", lease=HOUR)
        clock.advance(16)
        assert list(sweep(store).dead) == [f"w{n}"]

    failed = store.get(task.id)
    assert failed.status == "failed" and "lost 2 times" in failed.last_error
    assert store.ready() == []


def test_sweeper_thread_recovers_a_dead_worker_and_stops_cleanly(tmp_path: Path) -> None:
    store = open_store(tmp_path / "ralph.db")
    try:
        task = store.add("recover me")
        store.register_worker("ghost", heartbeat_interval=0.05)
        store.claim(task.id, "ghost", lease=HOUR)
        seen = threading.Event()
        sweeper = Sweeper(store, interval=0.05, on_sweep=lambda found: seen.set())
        with sweeper:
            assert seen.wait(30)
            assert sweeper.running
        assert not sweeper.running
        assert [t.id for t in store.ready()] == [task.id]
    finally:
        store.close()


CRASHING_WORKER = textwrap.dedent("""
    import sys, time
    from ralph.store import open_store
    store = open_store(sys.argv[1])
    worker = store.register_worker("crasher", heartbeat_interval=0.2)
    claim = store.claim_next("crasher", lease=3600)
    print(claim.task_id, flush=True)
    while True:
        store.heartbeat(worker.id, status="busy", current_task=claim.task_id)
        time.sleep(0.05)
""")


def test_task_of_a_sigkilled_worker_process_is_ready_again_without_waiting_for_its_lease(
    tmp_path: Path,
) -> None:
    db = tmp_path / "ralph.db"
    store = open_store(db)
    try:
        task = store.add("crash during me")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASHING_WORKER, str(db)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout.readline().strip() == task.id
        recovered = threading.Event()
        with Sweeper(
            store, interval=0.05, on_sweep=lambda found: recovered.set() if found.dead else None
        ):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert recovered.wait(30)
        assert [t.id for t in store.ready()] == [task.id]
        assert [e.kind for e in store.events(task_id=task.id)][-1] == "expired"
    finally:
        proc.kill()
        store.close()
