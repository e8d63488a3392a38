"""Ready query in-process at 10k, 100k and 1M tasks, against a primary-key lookup in the same store.

Targets: <= 1 ms at 100k, and growth from 10k to 1M <= 2x.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from common import build_store, median_time, table

FULL = (10_000, 100_000, 1_000_000)
TINY = (1_000, 5_000)


def run(sizes: tuple[int, ...], repeat: int = 200) -> str:
    rows = []
    plan = ""
    first = None
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            built = time.perf_counter()
            store = build_store(Path(tmp) / "ralph.db", size, size)
            build_s = time.perf_counter() - built
            ready = median_time(lambda s=store: s.ready(limit=1), repeat)
            ready10 = median_time(lambda s=store: s.ready(limit=10), repeat)
            pk = median_time(lambda s=store: s.get("t0000001"), repeat)
            first = first or ready
            rows.append(
                [
                    f"{size:,}",
                    f"{build_s:.1f} s",
                    f"{ready * 1000:.3f} ms",
                    f"{ready10 * 1000:.3f} ms",
                    f"{pk * 1000:.3f} ms",
                    f"{ready / pk:.2f}x",
                    f"{ready / first:.2f}x",
                ]
            )
            if not plan:
                conn = sqlite3.connect(Path(tmp) / "ralph.db")
                sql = store._sql["tasks_ready"]
                plan = "\n".join(
                    "    " + r[3]
                    for r in conn.execute(
                        "EXPLAIN QUERY PLAN " + sql, {"now": time.time(), "caps": None, "limit": 1}
                    )
                )
                conn.close()
            store.close()
    out = table(
        "Ready query (in-process, SQLite)",
        [
            "tasks (and edges)",
            "add_many build",
            "ready(limit=1) median",
            "ready(limit=10)",
            "get(id) baseline",
            "ready / get",
            "growth vs smallest",
        ],
        rows,
    )
    return out + "\nEXPLAIN QUERY PLAN of ready:\n\n" + plan + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="small sizes, just to prove it runs")
    args = parser.parse_args()
    print(run(TINY if args.tiny else FULL, repeat=20 if args.tiny else 200))


if __name__ == "__main__":
    main()
