"""Lease renewal under write contention: one holder renews every lease/3 (3 s lease) with ralph's
own LeaseRenewer while 16 processes hammer claim_next + done on the same SQLite store.

Renewals must never miss (0 lost leases). Renew latency p50/p99 is compared with an uncontended
renew of the same claim in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ms, percentile, table, verdict

from ralph.lease import LeaseRenewer
from ralph.store import open_store

LEASE = 3.0


def _hammer(url: str, name: str, start: float, stop: float, out: mp.Queue) -> None:
    store = open_store(url)
    ops = errors = 0
    while time.time() < start:
        time.sleep(0.005)
    while time.time() < stop:
        try:
            claim = store.claim_next(name, lease=60)
            if claim is None:  # keep the queue full: adding is a write too
                store.add_many([{"title": f"{name} refill {n}"} for n in range(200)])
                continue
            store.done(claim.task_id, token=claim.token)
            ops += 1
        except Exception:  # counted, not hidden
            errors += 1
    store.close()
    out.put((ops, errors))


class _TimedStore:
    """The store as the renewer sees it, timing each renew."""

    def __init__(self, store: Any):
        self.store = store
        self.latencies: list[float] = []

    def renew(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.store.renew(*args, **kwargs)
        finally:
            self.latencies.append(time.perf_counter() - t0)


def run(processes: int, seconds: float, tasks: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        url = str(Path(tmp) / "lease.db")
        store = open_store(url)
        store.add_many([{"title": f"task {n}"} for n in range(tasks)])
        store.add("held by the renewing worker", id="held", priority=-1)
        claim = store.claim("held", "holder", lease=LEASE)
        quiet = []
        for _ in range(200):
            t0 = time.perf_counter()
            claim = store.renew("held", "holder", claim.token)
            quiet.append(time.perf_counter() - t0)

        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()
        start = time.time() + 1.0 + processes * 0.1
        stop = start + seconds
        procs = [
            ctx.Process(target=_hammer, args=(url, f"h{n}", start, stop, out))
            for n in range(processes)
        ]
        for p in procs:
            p.start()
        lost: list[str] = []
        timed = _TimedStore(store)
        while time.time() < start:  # renew from the moment the hammering starts
            claim = store.renew("held", "holder", claim.token)
            time.sleep(min(0.5, max(0.0, start - time.time())))
        with LeaseRenewer(timed, claim, on_lost=lost.append) as renewer:  # type: ignore[arg-type]
            while time.time() < stop:
                time.sleep(0.05)
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        expired = store.events(task_id="held", kind="expired")
        live = store.active_claim("held")
        store.close()
    loud = timed.latencies
    ops = sum(r[0] for r in results)
    lost_count = len(lost) + len(expired) + (0 if live and live.token == claim.token else 1)
    rows = [
        [
            "uncontended (200 renews back to back)",
            len(quiet),
            ms(statistics.median(quiet)),
            ms(percentile(quiet, 0.99)),
            ms(max(quiet)),
            "1.00x / 1.00x",
            "",
            "",
        ],
        [
            f"{processes} processes hammering ({ops / seconds:,.0f} claim+done/s, "
            f"{sum(r[1] for r in results)} errors)",
            renewer.renewals,
            ms(statistics.median(loud)),
            ms(percentile(loud, 0.99)),
            ms(max(loud)),
            f"{statistics.median(loud) / statistics.median(quiet):.1f}x / "
            f"{percentile(loud, 0.99) / percentile(quiet, 0.99):.1f}x",
            lost_count,
            verdict(lost_count == 0 and renewer.renewals > 0),
        ],
    ]
    return table(
        f"Lease renewal under contention ({LEASE:g} s lease renewed every {LEASE / 3:g} s "
        f"for {seconds:g} s, SQLite)",
        [
            "renewer",
            "renewals",
            "p50",
            "p99",
            "max",
            "p50 / p99 vs uncontended",
            "lost leases",
            "target 0 lost",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="4 processes for 4 s")
    args = parser.parse_args()
    if args.tiny:
        print(run(4, 4.0, 500))
    else:
        print(run(16, 30.0, 20_000))


if __name__ == "__main__":
    main()
