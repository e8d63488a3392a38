"""Workers that die or freeze while holding a claim, as real processes and real signals.

The real clock runs here with a short lease; the tests poll until the lease ends rather than
sleeping a fixed time, and check the store's own timestamps instead of timing anything.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ralph import errors
from ralph.store import open_store

SCRIPT = Path(__file__).parent / "scripts" / "store_worker.py"
LEASE = 2.0


def start(command: str, db: Path, task_id: str, worker: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), command, str(db), task_id, worker, str(LEASE)],
        stdout=subprocess.PIPE,
        text=True,
    )


def claim_when_lease_ends(store, task_id: str, worker: str, holder: str):
    """Try to claim every 50 ms until the holder's lease ends; returns (claim, refusals)."""
    refusals = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            return store.claim(task_id, worker, lease=60), refusals
        except errors.AlreadyClaimedError as exc:
            assert exc.holder == holder
            assert store.claim_next(worker) is None  # not ready for anyone else either
            refusals += 1
            time.sleep(0.05)
    raise AssertionError(f"{task_id} never became claimable")


def test_claim_of_a_killed_worker_is_claimable_only_after_its_lease(tmp_path):
    db = tmp_path / "ralph.db"
    with open_store(db) as store:
        task = store.add("victim")
    doomed = start("hold", db, task.id, "doomed")
    try:
        held = json.loads(doomed.stdout.readline())
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)
    assert doomed.returncode == -signal.SIGKILL

    with open_store(db) as store:
        rescue, refusals = claim_when_lease_ends(store, task.id, "rescuer", holder="doomed")
        assert refusals > 0  # it was held after the crash...
        assert rescue.claimed_at >= held["expires_at"]  # ...until the lease ended, not before
        assert rescue.token > held["token"]
        with pytest.raises(errors.LeaseLostError):
            store.done(task.id, token=held["token"])
        with pytest.raises(errors.LeaseLostError):
            store.done(task.id, token=held["token"], worker="doomed")
        with pytest.raises(errors.LeaseLostError):
            store.renew(task.id, "doomed", held["token"])
        expired = store.events(task_id=task.id, kind="expired")
        assert [(e.worker, e.token) for e in expired] == [("doomed", held["token"])]
        assert store.active_claim(task.id) == rescue
        assert store.done(task.id, token=rescue.token, worker="rescuer")[0].status == "done"


def test_frozen_worker_resumed_after_losing_its_lease_cannot_renew_or_finish(tmp_path):
    db = tmp_path / "ralph.db"
    with open_store(db) as store:
        task = store.add("contested")
    zombie = start("zombie", db, task.id, "zombie")
    try:
        held = json.loads(zombie.stdout.readline())
        # stop it just after a renewal, while it sleeps: never inside a transaction
        assert json.loads(zombie.stdout.readline()) == {"renewed": True}
        zombie.send_signal(signal.SIGSTOP)
        with open_store(db) as store:
            usurper, _ = claim_when_lease_ends(store, task.id, "usurper", holder="zombie")
            assert usurper.token > held["token"]
            zombie.send_signal(signal.SIGCONT)
            out, _ = zombie.communicate(timeout=60)
            result = json.loads(out.splitlines()[-1])
            assert result["renew"][1] is True, result  # refused with a LeaseLostError
            assert result["done"][1] is True, result
            assert store.get(task.id).status == "open"
            assert store.active_claim(task.id) == usurper
            assert store.events(task_id=task.id, kind="done") == []
            assert store.done(task.id, token=usurper.token, worker="usurper")[0].status == "done"
    finally:
        zombie.send_signal(signal.SIGCONT)
        zombie.kill()
        zombie.wait(timeout=30)
    assert zombie.returncode == 0
