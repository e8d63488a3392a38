"""Network partitions across hosts: three `ralph run --workers 2 --lease 10s --remote origin`
hosts (each its own clone of one git remote) drain 30 tasks from one PostgreSQL; one host's
link to the database drops silently for 25 s (tests/support/tcpproxy.py, a proxy per host
that stops forwarding without closing anything), either while its agents work ("at once") or
inside its next transaction after that transaction locked rows ("in a transaction"); or
PostgreSQL is killed and restarted mid-run. The harness is tests/partition.py.

Reported per round, from the claims, attempts and events the processes recorded: seconds
from the cut until another host claimed each task the cut host held (bound: lease + 6 s),
seconds until the rows the cut host held could be locked by anyone (bound: 3 s), how long
before its lease's end each of the cut host's agents was stopped, agent launches per task,
attempts started on a lost claim, duplicate commits and lost tasks (all three must be 0).

`python bench/bench_partition.py [--rounds N] [--partition 25] [--tiny]`
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import partition  # noqa: E402
from common import table, verdict  # noqa: E402
from pgserver import start_server  # noqa: E402

LEASE = 10.0
MODES = {"at_once": "at once", "in_tx": "in a transaction", "pg_restart": "PostgreSQL restart"}


def one_round(server, mode: str, n: int, partition_s: float) -> list:  # noqa: ANN001
    base = Path(tempfile.mkdtemp(prefix="ralph-partition-"))
    url = server.fresh_database(f"partition_{mode}_{n}")
    cluster = partition.Cluster(base, server, url, lease=LEASE)
    result = cluster.run(mode, partition_s=partition_s)
    shutil.rmtree(base)  # kept (with its logs) when the round failed
    reclaim = max(result.reclaim_s.values(), default=None)
    blocked = result.blocked_s
    stop = max(result.stop_late_s, default=None)
    duplicates = sum(c - 1 for c in result.commits.values())
    lost = result.tasks - len(result.commits)
    ok = (
        (reclaim is None or reclaim <= LEASE + 6)
        and (blocked is None or blocked <= 3)
        and (stop is None or stop < 0)
        and not result.lost_launches
        and duplicates == lost == 0
    )
    return [
        MODES[mode],
        len(result.held_at_cut),
        "-" if reclaim is None else f"{reclaim:.1f} s",
        "-" if blocked is None else f"{blocked:.2f} s",
        "-" if stop is None else f"{-stop:.1f} s before",
        f"{result.launches_per_task:.2f}",
        len(result.lost_launches),
        duplicates,
        lost,
        f"{result.wall_s:.0f} s",
        verdict(ok),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partition", type=float, default=25.0, help="seconds a cut lasts")
    parser.add_argument(
        "--tiny", action="store_true", help="one round of the 'at once' cut, 12 s (a smoke run)"
    )
    args = parser.parse_args()
    rounds, cut = (1, 12.0) if args.tiny else (args.rounds, args.partition)
    modes = ["at_once"] if args.tiny else list(MODES)  # tests/test_partition.py runs all three
    server = start_server()
    if server is None:
        sys.exit("PostgreSQL is needed (initdb/pg_ctl on PATH or $RALPH_TEST_PG)")
    rows = []
    try:
        for mode in modes:
            for n in range(rounds):
                rows.append(one_round(server, mode, n, cut))
    finally:
        server.close()
    print(
        table(
            f"Partitions: 3 hosts x 2 workers, lease {LEASE:.0f} s, 30 tasks, {cut:.0f} s cuts",
            [
                "cut",
                "tasks held",
                "reclaimed after",
                "others blocked",
                "agents stopped",
                "launches/task",
                "lost-claim launches",
                "duplicates",
                "lost tasks",
                "wall",
                "verdict",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
