"""Three workers drain the store from Python: the parallel-workers "Programmatic Example".

    python examples/programmatic.py [DB]     # default: a new store in a temp dir, 9 tasks

Each worker is a thread with the same loop as the CLI example: take the next ready task, claim
it (AlreadyClaimedError means another worker got it first: try the next), work, then finish.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from ralph import AlreadyClaimedError, InvalidTransitionError, Store, open_store

WORK_SECONDS = 0.05


def worker_loop(store: Store, worker_id: str) -> None:
    """Run until no task is ready."""
    while True:
        ready = store.ready(limit=1)
        if not ready:
            print(f"[{worker_id}] No more tasks")
            break
        task = ready[0]
        try:
            claim = store.claim(task.id, worker_id, lease=60)
        except (AlreadyClaimedError, InvalidTransitionError):
            continue  # another worker got it (or even finished it already): try the next
        print(f"[{worker_id}] Claimed {task.id}: {task.title}")

        time.sleep(WORK_SECONDS)  # do the work (your implementation here)

        # The original releases, then sets status done; between the two another worker could
        # claim the task. `done` with the claim's fencing token releases in the same transaction
        # and refuses if the lease was lost meanwhile.
        store.done(task.id, token=claim.token)
        print(f"[{worker_id}] Completed {task.id}")


def run_workers(store: Store, workers: list[str]) -> None:
    threads = [threading.Thread(target=worker_loop, args=(store, w), name=w) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("All workers finished")


def main(db: str | None = None, tasks: int = 9) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        store = open_store(db or Path(scratch) / "ralph.db")
        with store:
            ids = [store.add(f"Task {n}").id for n in range(1, tasks + 1)]
            run_workers(store, ["worker-alpha", "worker-beta", "worker-gamma"])

            done = Counter(e.task_id for e in store.events(kind="done"))
            claimed = Counter(e.task_id for e in store.events(kind="claimed"))
            assert all(done[i] == 1 for i in ids), f"done counts: {done}"
            assert all(claimed[i] == 1 for i in ids), f"claim counts: {claimed}"
            print(f"Each of {len(ids)} tasks was claimed once and completed once")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
