"""Claim throughput: P processes drain a queue through claim_next + done(token).

Reports claims/s, p99 claim latency, duplicates (must be 0), store errors (must be 0) and fairness
(fewest/most claims per process); the 1-process run is the baseline of the same run.
Targets: >= 5,000 claims/s at 16 processes on SQLite; >= 2,000 at 32 on PostgreSQL.

`--before REF` also runs the SQLite levels with the store code of git revision REF (exported to a
temporary folder), so an optimisation is judged before/after in one run. `--profile` prints
where one process spends a claim_next + done.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing as mp
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from common import ROOT, percentile, table, verdict

import ralph
from ralph.store import open_store

TARGET_SQLITE, TARGET_PG = 5_000, 2_000


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
    start = time.time() + 1.5 + processes * 0.1
    procs = [ctx.Process(target=_worker, args=(url, f"p{n}", start, out)) for n in range(processes)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    elapsed = time.time() - start
    for p in procs:
        p.join()
    store = open_store(url)
    claimed = Counter(e.task_id for e in store.events(kind="claimed"))
    done = Counter(e.task_id for e in store.events(kind="done"))
    left = store.status_counts()["open"]
    store.close()
    counts = [r[1] for r in results]
    lat = [x for r in results for x in r[2]]
    return {
        "claims": sum(counts),
        "claims_s": sum(counts) / elapsed,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "dupes": sum(n - 1 for n in claimed.values() if n > 1)
        + sum(n - 1 for n in done.values() if n > 1),
        "errors": sum(r[3] for r in results) + left,
        "fair": f"{min(counts)}/{max(counts)}",
    }


def run(
    url_for: Callable[[int], str], tasks: int, levels: tuple[int, ...], label: str, target: int
) -> str:
    rows = []
    base = None
    for processes in levels:
        url = url_for(processes)
        store = open_store(url)
        store.add_many([{"title": f"task {n}"} for n in range(tasks)])
        store.close()
        r = drain(url, processes)
        base = base or r["claims_s"]
        rows.append(
            [
                processes,
                f"{r['claims']:,}",
                f"{r['claims_s']:,.0f}",
                f"{r['claims_s'] / base:.2f}x",
                f"{r['p99_ms']:.1f} ms",
                r["dupes"],
                r["errors"],
                r["fair"],
                verdict(r["claims_s"] >= target and not r["dupes"] and not r["errors"])
                if processes == max(levels)
                else "",
            ]
        )
    return table(
        f"Claim throughput ({label}, {tasks:,} tasks, claim_next + done)",
        [
            "processes",
            "claims",
            "claims/s",
            "vs 1 process",
            "p99 claim latency",
            "duplicates",
            "errors",
            "fewest/most per process",
            f"target >= {target:,}/s at {max(levels)}",
        ],
        rows,
    )


def profile(tmp: Path, tasks: int, top: int = 12) -> str:
    """Where one process spends claim_next + done, by named query and by Python function."""
    from ralph.store import sqlite as backend

    store = open_store(tmp / "profile.db")
    store.add_many([{"title": f"task {n}"} for n in range(tasks)])
    spent: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    originals = {m: getattr(backend._SQLiteTx, m) for m in ("one", "all", "run")}

    def timed(method: Callable) -> Callable:
        def wrapper(self, name, /, **params):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return method(self, name, **params)
            finally:
                spent[name] += time.perf_counter() - t0
                calls[name] += 1

        return wrapper

    def loop(n: int) -> None:
        for _ in range(n):
            claim = store.claim_next("profiler", lease=60)
            store.done(claim.task_id, token=claim.token)

    n = tasks // 2
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(loop, n)
    profiled = time.perf_counter() - t0
    for m, fn in originals.items():
        setattr(backend._SQLiteTx, m, timed(fn))
    try:
        t0 = time.perf_counter()
        loop(n)
        wall = time.perf_counter() - t0
    finally:
        for m, fn in originals.items():
            setattr(backend._SQLiteTx, m, fn)
    store.close()
    stats = pstats.Stats(prof)
    by_tottime = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]
    queries = sum(spent.values())
    rows = [["all of claim_next + done", n, f"{wall / n * 1e6:.0f} us", "100%"]]
    rows += [
        [f"query `{name}`", calls[name], f"{t / n * 1e6:.0f} us", f"{t / wall:.0%}"]
        for name, t in spent.most_common(top)
    ]
    rows.append(
        [
            "everything else (BEGIN/COMMIT, Python)",
            "",
            f"{(wall - queries) / n * 1e6:.0f} us",
            f"{(wall - queries) / wall:.0%}",
        ]
    )
    out = table(
        f"One process, claim_next + done ({tasks:,} tasks): time per claim by named query",
        ["where", "calls", "per claim", "share"],
        rows,
    )
    out += "\nTop functions by own time (cProfile):\n\n"
    for (path, line, name), (_cc, ncalls, tt, _cum, _c) in by_tottime:
        where = Path(path).name if path != "~" else "builtin"
        out += f"- `{where}:{line} {name}`: {ncalls} calls, {tt / profiled:.0%} of the time\n"
    return out


def _before(ref: str, argv: list[str]) -> str:
    """This benchmark's SQLite rows with ralph's code as of git revision `ref`."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "ralph"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": tmp}
        proc = subprocess.run(
            [sys.executable, __file__, *argv, "--label", f"SQLite, ralph as of {ref[:10]}"],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument(
        "--pg",
        metavar="URL|auto",
        help="also bench PostgreSQL: an empty database's URL (all levels share it), or `auto` "
        "for a throwaway server from tests/pgserver.py with a fresh database per level",
    )
    parser.add_argument("--before", metavar="REF", help="also run SQLite with ralph as of REF")
    parser.add_argument("--profile", action="store_true", help="profile one process")
    parser.add_argument("--tasks", type=int, help="tasks per level (default 20,000)")
    parser.add_argument("--label", default="SQLite", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tasks = args.tasks or (500 if args.tiny else 20_000)
    levels = (1, 2) if args.tiny else (1, 4, 16)
    if args.label != "SQLite":  # the --before child: say which code really ran
        args.label += f" ({Path(ralph.__file__).parent.parent.name}/ralph)"
    if args.before:
        print(_before(args.before, ["--tasks", str(tasks), *(["--tiny"] if args.tiny else [])]))
    with tempfile.TemporaryDirectory() as tmp:
        print(
            run(
                lambda p: str(Path(tmp) / f"claims-{p}.db"),
                tasks,
                levels,
                args.label,
                TARGET_SQLITE,
            )
        )
        if args.profile:
            print(profile(Path(tmp), min(tasks, 4000)))
    if args.pg:
        pg_levels = (1, 2) if args.tiny else (1, 8, 32)
        tasks = min(tasks, 5_000)  # a PostgreSQL claim costs round trips: keep the run short
        if args.pg != "auto":
            print(run(lambda p: args.pg, tasks, pg_levels, "PostgreSQL", TARGET_PG))
            return
        sys.path.insert(0, str(ROOT / "tests"))
        try:
            from pgserver import start_server
        except ImportError:
            start_server = None
        server = start_server() if start_server else None
        if server is None:
            print("PostgreSQL: skipped, no server binaries here (or pass --pg URL).\n")
            return
        try:
            print(
                run(
                    lambda p: server.fresh_database(f"bench_claims_{p}"),
                    tasks,
                    pg_levels,
                    "PostgreSQL",
                    TARGET_PG,
                )
            )
        finally:
            server.close()


if __name__ == "__main__":
    main()
