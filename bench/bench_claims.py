"""Claim throughput: P processes drain a queue through claim_next + done(token).

Reports claims/s, p99 claim latency, duplicates (must be 0), store errors (must be 0) and fairness
(fewest/most claims per process); the 1-process run is the baseline of the same run.
Targets: >= 5,000 claims/s at 16 processes on SQLite; >= 2,000 at 32 on PostgreSQL.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import percentile, table

from ralph.store import open_store


def _worker(url: str, name: str, start: float, out: mp.Queue) -> None:
    store = open_store(url)
    latencies: list[float] = []
    errors = 0
    while time.time() < start:
        time.sleep(0.001)
    while True:
        t0 = time.perf_counter()
        try:
            claim = store.claim_next(name, lease=60)
        except Exception:  # counted, not hidden: the table reports it
            errors += 1
            continue
        latencies.append(time.perf_counter() - t0)
        if claim is None:
            break
        try:
            store.done(claim.task_id, token=claim.token)
        except Exception:
            errors += 1
    store.close()
    out.put((name, len(latencies) - 1, latencies, errors))


def drain(url: str, processes: int) -> dict[str, float | int | str]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start = time.time() + 1.5 + processes * 0.05
    procs = [ctx.Process(target=_worker, args=(url, f"p{n}", start, out))
             for n in range(processes)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    elapsed = time.time() - start
    for p in procs:
        p.join()
    store = open_store(url)
    claimed = Counter(e.task_id for e in store.events(kind="claimed"))
    done = Counter(e.task_id for e in store.events(kind="done"))
    store.close()
    counts = [r[1] for r in results]
    lat = [x for r in results for x in r[2]]
    return {
        "claims": sum(counts),
        "claims_s": sum(counts) / elapsed,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "dupes": sum(n - 1 for n in claimed.values() if n > 1)
        + sum(n - 1 for n in done.values() if n > 1),
        "errors": sum(r[3] for r in results),
        "fair": f"{min(counts)}/{max(counts)}",
    }


def run(url_for: "callable", tasks: int, levels: tuple[int, ...], label: str) -> str:
    rows = []
    base = None
    for processes in levels:
        url = url_for(processes)
        store = open_store(url)
        store.add_many([{"title": f"task {n}"} for n in range(tasks)])
        store.close()
        r = drain(url, processes)
        base = base or r["claims_s"]
        rows.append([processes, f"{r['claims']:,}", f"{r['claims_s']:,.0f}",
                     f"{r['claims_s'] / base:.2f}x", f"{r['p99_ms']:.1f} ms", r["dupes"],
                     r["errors"], r["fair"]])
    return table(f"Claim throughput ({label}, {tasks:,} tasks, claim_next + done)",
                 ["processes", "claims", "claims/s", "vs 1 process", "p99 claim latency",
                  "duplicates", "errors", "fewest/most per process"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--pg", help="a postgresql:// URL of an empty database to also bench")
    args = parser.parse_args()
    tasks = 500 if args.tiny else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        print(run(lambda p: str(Path(tmp) / f"claims-{p}.db"), tasks,
                  (1, 2) if args.tiny else (1, 4, 16), "SQLite"))
    if args.pg:
        print(run(lambda p: args.pg, tasks, (1, 2) if args.tiny else (1, 8, 32), "PostgreSQL"))


if __name__ == "__main__":
    main()
