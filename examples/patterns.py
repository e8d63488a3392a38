"""The parallel-workers patterns in Python: claim contention, lease renewal, crash recovery.

    python examples/patterns.py        # runs each pattern against a scratch store

Each function is the shape to copy; `main` runs them and checks what they promise.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ralph import AlreadyClaimedError, Claim, LeaseLostError, Store, open_store


def claim_with_retry(store: Store, task_id: str, worker_id: str) -> Claim | None:
    """Claim contention: a task another worker holds is fine, move on; other errors propagate."""
    try:
        return store.claim(task_id, worker_id)
    except AlreadyClaimedError as exc:
        print(f"Task {task_id} already claimed by {exc.holder}, moving on")
        return None


def work_with_renewal(
    store: Store,
    task_id: str,
    worker_id: str,
    work: Callable[[], None],
    lease: float = 30 * 60,
    every: float = 25 * 60,
) -> None:
    """Lease renewal: a thread renews while the work runs; stop it before finishing.

    Renewal sets expiry to now + the claim's own lease, so renewing every `every` seconds keeps
    the claim alive, and a crashed worker's claim lapses one lease after its last renewal.
    """
    claim = store.claim(task_id, worker_id, lease=lease)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(every):
            try:
                store.renew(task_id, worker_id, token=claim.token)
            except LeaseLostError:
                return  # someone expired or took it: the final done will refuse too

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        work()
        store.done(task_id, token=claim.token)
    finally:
        stop.set()
        renewer.join()


def crash_recovery(store: Store) -> list[Claim]:
    """Crash recovery: expire claims whose lease ran out; their tasks become ready again.

    Run it periodically (the loop's sweeper does, and so does `ralph claim:expire`).
    """
    cleaned = []
    for claim in store.expired():
        print(f"Cleaning up expired claim {claim.id} on {claim.task_id} ({claim.worker})")
        cleaned.append(store.expire(claim.id))
    return cleaned


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch, open_store(Path(scratch) / "r.db") as store:
        # Contention: the second worker backs off without an error.
        task = store.add("Contended task")
        assert claim_with_retry(store, task.id, "worker-alpha") is not None
        assert claim_with_retry(store, task.id, "worker-beta") is None

        # Renewal: a 1 s lease renewed every 0.3 s survives 1.5 s of work.
        long_task = store.add("Long task")
        work_with_renewal(
            store, long_task.id, "worker-alpha", lambda: time.sleep(1.5), lease=1.0, every=0.3
        )
        assert store.get(long_task.id).status == "done"
        renewals = store.events(task_id=long_task.id, kind="renewed")
        print(f"Long task done after {len(renewals)} renewals")

        # Crash recovery: a worker claims with a short lease and "crashes" (never returns).
        lost = store.add("Task of a crashed worker")
        store.claim(lost.id, "worker-crashed", lease=0.2)
        assert lost.id not in {t.id for t in store.ready(limit=None)}
        time.sleep(0.3)
        assert [c.task_id for c in crash_recovery(store)] == [lost.id]
        assert lost.id in {t.id for t in store.ready(limit=None)}
        print("Crashed worker's task is ready again")


if __name__ == "__main__":
    main()
