"""Hot CLI start: `ralph ready --json --limit 1`, `ralph claim ID W`, `ralph done ID` on a store
with 100k tasks and 100k dependency edges, against `python -c "import typer, sqlite3"`.

Runs are interleaved (each round runs the floor and every command once, in a shuffled order) and
medians are compared, so machine load affects both sides alike. Target: <= 1.3x the floor.
`python -X importtime` then lists what each command imports beyond the floor.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from common import bench_env, build_store, ms, ralph_argv, run_quiet, table, verdict

TARGET = 1.3
FLOOR = [sys.executable, "-c", "import typer, sqlite3"]


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    run_quiet(argv, env=env)
    return time.perf_counter() - start


def _imports(argv: list[str], env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """{module: (self us, cumulative us)} from `python -X importtime`."""
    proc = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, capture_output=True, text=True
    )
    found = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line.split(":", 1)[1].split("|")
        found[name.strip()] = (int(own), int(total))
    return found


def offenders(
    commands: dict[str, Callable[[], list[str]]], env: dict[str, str], top: int, repeat: int
) -> dict[str, tuple[int, float, list[tuple[str, float]]]]:
    """Per command: the modules it imports that the floor does not, by median self time."""
    floor = set()
    for _ in range(repeat):
        floor |= set(_imports(FLOOR, env))
    out = {}
    for label, argv in commands.items():
        samples: dict[str, list[int]] = defaultdict(list)
        for _ in range(repeat):
            for name, (own, _total) in _imports(argv(), env).items():
                samples[name].append(own)
        extra = {n: statistics.median(v) for n, v in samples.items() if n not in floor}
        ranked = sorted(extra.items(), key=lambda kv: -kv[1])
        out[label] = (len(extra), sum(extra.values()), ranked[:top])
    return out


def run(tasks: int, rounds: int, top: int = 8) -> str:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "ralph.db"
        store = build_store(db, tasks, tasks)
        ready = [t.id for t in store.ready(limit=rounds + 8)]
        claim_probes, done_probes = ready[rounds + 1 :], ready[rounds + 1 :]  # importtime runs
        store.close()
        env = bench_env(tmp, RALPH_DB=str(db))
        ralph = ralph_argv()
        claim_ids, done_ids = list(ready[1 : rounds + 1]), list(ready[1 : rounds + 1])
        commands = {
            "ralph ready --json --limit 1": lambda: ralph + ["ready", "--json", "--limit", "1"],
            "ralph claim ID W": lambda: ralph + ["claim", claim_ids.pop(), "bench-worker"],
            "ralph done ID": lambda: ralph + ["done", done_ids.pop()],
        }
        # Warm up: fill the private .pyc cache and the OS file cache for every side.
        run_quiet(FLOOR, env=env)
        run_quiet(ralph + ["ready", "--json", "--limit", "1"], env=env)
        run_quiet(ralph + ["claim", ready[0], "warm"], env=env)
        run_quiet(ralph + ["done", ready[0]], env=env)
        times: dict[str, list[float]] = defaultdict(list)
        rng = random.Random(1)
        for _ in range(rounds):
            # claim must run before done of the same id; the floor and ready go anywhere.
            order = ["floor", "ralph ready --json --limit 1", "claim+done"]
            rng.shuffle(order)
            for item in order:
                if item == "floor":
                    times["floor"].append(_time(FLOOR, env))
                elif item == "claim+done":
                    times["ralph claim ID W"].append(_time(commands["ralph claim ID W"](), env))
                    times["ralph done ID"].append(_time(commands["ralph done ID"](), env))
                else:
                    times[item].append(_time(commands[item](), env))
        floor = statistics.median(times["floor"])
        rows = [['`python -c "import typer, sqlite3"` (floor)', ms(floor), "", "1.00x", ""]]
        for label in commands:
            med = statistics.median(times[label])
            spread = f"{ms(min(times[label]))} – {ms(max(times[label]))}"
            ratio = med / floor
            rows.append([f"`{label}`", ms(med), spread, f"{ratio:.2f}x", verdict(ratio <= TARGET)])
        repeat = 1 if rounds < 10 else 3
        probes = {
            "ready": lambda: ralph + ["ready", "--json", "--limit", "1"],
            "claim": lambda: ralph + ["claim", claim_probes.pop(), "probe"],
            "done": lambda: ralph + ["done", done_probes.pop()],
        }
        if rounds < 10:  # a quick run: one command's imports are enough to prove it works
            probes = {"ready": probes["ready"]}
        found = offenders(
            probes,
            env,
            top,
            repeat,
        )
    out = table(
        f"Hot CLI start ({tasks:,} tasks, {tasks:,} edges; median of {rounds} interleaved runs)",
        ["command", "median", "min – max", "vs floor", f"target <= {TARGET}x"],
        rows,
    )
    out += "\nImported beyond the floor (`python -X importtime`, median self time):\n\n"
    for label, (count, total_us, ranked) in found.items():
        listed = ", ".join(f"{name} {us / 1000:.1f} ms" for name, us in ranked)
        out += f"- `{label}`: {count} modules, {total_us / 1000:.1f} ms in all; top: {listed}\n"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="small store, few runs")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 21)")
    args = parser.parse_args()
    tasks = 2_000 if args.tiny else 100_000
    print(run(tasks, args.rounds or (2 if args.tiny else 21)))


if __name__ == "__main__":
    main()
