"""Chaos soak: real `ralph` processes drain a queue while being SIGKILLed; the whole history is
checked afterwards (tests/chaos.py, the harness the chaos test uses).

Each round: 40 tasks (25 independent, 5 chains of 3), `ralph run --workers 3` plus two
`ralph worker start` processes, lease 3 s, an agent working 0.1-0.8 s; random SIGKILLs of a
worker, its process group or one of its agents, and git's reference-transaction hook killing
the landing process right after the target moved (p = 0.15). Reported per round: kills, agent
launches per task, launches saved by the reconcile (a task completed from its landed commit
instead of running the agent again), duplicates and lost tasks (must be 0).

`python bench/bench_chaos.py [--rounds N] [--pg auto] [--tiny]`
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import chaos  # noqa: E402
from common import table  # noqa: E402

from ralph.store import open_store  # noqa: E402


def tasks(independent: int = 25, chains: int = 5) -> list[dict]:
    specs: list[dict] = [
        {"id": f"c{n:02d}", "title": f"independent {n}"} for n in range(independent)
    ]
    for chain in range(chains):
        ids = [f"k{chain}{step}" for step in range(3)]
        for step, task_id in enumerate(ids):
            specs.append({"id": task_id, "title": task_id, "blocked_by": ids[step - 1 : step]})
    return specs


def one_round(base: Path, db: str | None, seed: int, kills: int, specs: list[dict]) -> list:
    repo = chaos.make_repo(base / "repo")
    (repo / "ralph.toml").write_text(chaos.CONFIG)
    chaos.git(repo, "add", "ralph.toml")
    chaos.git(repo, "commit", "-q", "-m", "config")
    since = chaos.git(repo, "rev-parse", "HEAD")
    chaos.install_kill_hook(repo / ".git")
    url = db or str(base / "ralph.db")
    with open_store(url) as store:
        store.add_many(specs)
    env = chaos.chaos_env(base, url, CHAOS_HOOK_P="0.15", CHAOS_MIN="0.1", CHAOS_MAX="0.8")
    args = ["--lease", "3s", "--agent-cmd", chaos.agent_cmd()]
    commands = [
        ["run", "--workers", "3", "--names", "a,b,c", "--no-live", "--watch", *args],
        ["worker", "start", "--name", "h1", *args],
        ["worker", "start", "--name", "h2", *args],
    ]

    def done() -> int:
        with open_store(url) as store:
            return store.status_counts()["done"]

    result = chaos.drain_under_fire(
        repo, env, commands=commands, tasks=len(specs), kills=kills, seed=seed, status=done
    )
    per_task = chaos.check_history(repo, [s["id"] for s in specs], None, since)
    logs = "".join(p.read_text() for p in (base / "logs").glob("*.log"))
    saved = logs.count("had already landed") + logs.count("; marked done")
    launches = sum(result.launches.values())
    return [
        seed,
        len(specs),
        result.kills,
        result.hook_kills,
        result.starts,
        launches,
        f"{launches / len(specs):.2f}",
        max(result.launches.values()),
        saved,
        sum(n - 1 for n in per_task.values()),
        len(specs) - len(per_task),
        len(result.late),
        f"{result.wall_s:.0f} s",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--pg", choices=["auto", "off"], default="off")
    parser.add_argument(
        "--tiny", action="store_true", help="one round of 12 tasks, 4 kills (a smoke run)"
    )
    args = parser.parse_args()
    rounds, kills = (1, 4) if args.tiny else (args.rounds, args.kills)
    specs = tasks(6, 2) if args.tiny else tasks()
    backends: list[tuple[str, str | None]] = [("SQLite", None)]
    server = None
    if args.pg == "auto":
        from pgserver import start_server

        server = start_server()
        if server is not None:
            backends.append(("PostgreSQL", None))
    rows = []
    try:
        for name, _ in backends:
            for n in range(rounds):
                tmp = Path(tempfile.mkdtemp(prefix="ralph-chaos-"))
                db = None
                if name == "PostgreSQL" and server is not None:
                    db = server.fresh_database(f"chaos_{n}")
                rows.append([name, *one_round(tmp, db, seed=100 + n, kills=kills, specs=specs)])
                shutil.rmtree(tmp)  # kept (with its logs) when the round failed
    finally:
        if server is not None:
            server.close()
    print(
        table(
            "Chaos: every task done once, one commit per task, under SIGKILL",
            [
                "store",
                "seed",
                "tasks",
                "random kills",
                "kills after a landing",
                "process starts",
                "agent launches",
                "per task",
                "most for one task",
                "launches saved by reconcile",
                "duplicate commits",
                "lost tasks",
                "launches after landing",
                "wall",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
