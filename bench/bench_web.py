"""`ralph web` at 100k tasks: server time per page, and event-to-screen latency at 8 busy workers.

Targets: <= 50 ms of server time per page (overview, task list) at 100k tasks; <= 1 s from an
event's commit to its row on the overview in a real browser while 8 workers claim, renew and
finish tasks in another process.

Server time is measured twice: in process (the page's store reads plus its template, what the
server does per request) and as an HTTP round trip on loopback (that plus uvicorn and the socket).
The latency runs headless Debian chromium through Playwright; the timestamps on both sides come
from the same machine clock.

    python bench/bench_web.py            # 100k tasks
    python bench/bench_web.py --tiny     # 2k tasks, a few samples: checks that it runs
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import percentile, table

from ralph.models import AttemptEnd
from ralph.store import open_store
from ralph.store.base import SQLStore

WORKERS = 8
CHROMIUM = "/usr/bin/chromium"


def seed(path: Path, tasks: int, rng: random.Random) -> SQLStore:
    """`tasks` tasks (a tenth done, some failed, labels, requirements, dependencies) and two
    days of attempts with costs, as a busy store looks after a few nights."""
    words = ["parser", "tests", "docs", "api", "cache", "login", "search", "export", "ui", "db"]
    specs = []
    for n in range(tasks):
        spec = {
            "id": f"t{n:07d}",
            "title": f"{rng.choice(words)} {rng.choice(words)} task {n}",
            "description": f"Make the {rng.choice(words)} work. " * 3,
            "priority": rng.randrange(0, 5),
            "labels": [rng.choice(words)] if n % 3 == 0 else [],
            "requires": ["gpu"] if n % 50 == 0 else [],
        }
        if n > 10 and n % 7 == 0:
            spec["blocked_by"] = [f"t{rng.randrange(0, n):07d}"]
        specs.append(spec)
    store = open_store(path)
    for start in range(0, tasks, 50_000):
        store.add_many(specs[start : start + 50_000])
    now = time.time()
    done = tasks // 10
    for n in range(done):
        task_id = f"t{n:07d}"
        claim = store.claim(task_id, f"w{n % WORKERS}") if n < 2000 else None
        if claim is None:
            store.done(task_id)
            continue
        attempt = store.start_attempt(
            task_id, attempt=1, worker=claim.worker, agent=rng.choice(["claude", "codex"])
        )
        store.finish(
            task_id,
            worker=claim.worker,
            token=claim.token,
            verdict="done",
            attempt_id=attempt.id,
            end=AttemptEnd(outcome="success", cost_usd=round(rng.uniform(0.01, 0.4), 4)),
        )
    with store.transaction() as tx:  # spread the attempts over the last two days
        tx_conn = getattr(tx, "conn", None)
        if tx_conn is not None:
            tx_conn.execute(
                "UPDATE attempts SET started_at = ? - (id % 48) * 3600, "
                "ended_at = ? - (id % 48) * 3600 + 60",
                (now, now),
            )
    return store


def busy_workers(db: Path, stop: threading.Event, counter: list[int]) -> list[threading.Thread]:
    """8 workers that claim, renew and finish open tasks, each step a committed event."""

    def work(n: int) -> None:
        store = open_store(db)
        name = f"bench-{n}"
        worker = store.register_worker(name, host="bench")
        while not stop.is_set():
            claim = store.claim_next(name, lease=60)
            if claim is None:
                time.sleep(0.1)
                continue
            store.heartbeat(worker.id, status="busy", current_task=claim.task_id)
            for _ in range(2):
                time.sleep(0.15)
                store.renew(claim.task_id, name, claim.token)
                counter[0] += 1
            store.finish(claim.task_id, worker=name, token=claim.token, verdict="done")
            counter[0] += 2
        store.close()

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(WORKERS)]
    for t in threads:
        t.start()
    return threads


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start = time.perf_counter()
    conn.request("GET", path)
    res = conn.getresponse()
    res.read()
    took = time.perf_counter() - start
    conn.close()
    assert res.status == 200, (path, res.status)
    return took


def in_process(store: SQLStore, samples: int) -> list[list[str]]:
    """Each page's store reads and template, timed inside one process."""
    from starlette.requests import Request  # noqa: F401  (the extra is installed)

    from ralph.web import views
    from ralph.web.app import _templates

    env = _templates()
    ctx = {"csrf": "x", "read_only": False, "db": "bench", "version": "", "path": "/"}
    pages = {
        "overview": lambda: env.get_template("overview.html").render(
            o=views.overview(store), **ctx
        ),
        "task list, page 1": lambda: env.get_template("tasks.html").render(
            t=views.task_list(store, {}), qs="", **ctx
        ),
        "task list, page 1000": lambda: env.get_template("tasks.html").render(
            t=views.task_list(store, {"page": "1000"}), qs="", **ctx
        ),
        "task list, status=ready": lambda: env.get_template("tasks.html").render(
            t=views.task_list(store, {"status": "ready"}), qs="", **ctx
        ),
        "task list, label=api": lambda: env.get_template("tasks.html").render(
            t=views.task_list(store, {"label": "api"}), qs="", **ctx
        ),
        "task list, search 'cache docs'": lambda: env.get_template("tasks.html").render(
            t=views.task_list(store, {"q": "cache docs"}), qs="", **ctx
        ),
        "chart data (/api/series)": lambda: views.series(store),
    }
    rows = []
    for name, fn in pages.items():
        fn()
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        rows.append(
            [name, f"{statistics.median(times) * 1000:.1f}", f"{percentile(times, 0.9) * 1000:.1f}"]
        )
    return rows


def over_http(port: int, samples: int) -> list[list[str]]:
    paths = {
        "overview": "/",
        "task list, page 1": "/tasks",
        "task list, page 1000": "/tasks?page=1000",
        "task list, status=ready": "/tasks?status=ready",
        "task list, search 'cache docs'": "/tasks?q=cache+docs",
        "task page": "/tasks/t0000005",
        "chart data (/api/series)": "/api/series",
    }
    rows = []
    for name, path in paths.items():
        get(port, path)
        times = [get(port, path) for _ in range(samples)]
        rows.append(
            [name, f"{statistics.median(times) * 1000:.1f}", f"{percentile(times, 0.9) * 1000:.1f}"]
        )
    return rows


def latency(port: int, db: Path, samples: int) -> tuple[list[float], int]:
    """Seconds from a committed event to its row on the overview, with 8 workers busy."""
    from playwright.sync_api import sync_playwright

    store = open_store(db)
    stop = threading.Event()
    counter = [0]
    threads = busy_workers(db, stop, counter)
    results: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#conn.on")
            # Records when each event row is put on the screen (CDP evaluation is not page
            # script, so the Content-Security-Policy does not apply to it).
            page.evaluate(
                """() => {
                  window.seen = {};
                  new MutationObserver((records) => {
                    for (const r of records) for (const n of r.addedNodes) {
                      const a = n.querySelector && n.querySelector('a.tid');
                      const id = a && a.textContent;
                      if (id && !(id in window.seen)) window.seen[id] = Date.now();
                    }
                  }).observe(document.querySelector('#events'), {childList: true});
                }"""
            )
            time.sleep(1.0)
            before = counter[0]
            for n in range(samples):
                marker = f"mark-{n}"
                store.add("latency marker", id=marker, labels=["bench"], priority=-10)
                committed = time.time()
                page.wait_for_function(f"() => '{marker}' in window.seen", timeout=10_000)
                shown = page.evaluate(f"() => window.seen['{marker}']") / 1000
                results.append(shown - committed)
                time.sleep(0.25)
            events = counter[0] - before
            browser.close()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        store.close()
    return results, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="2k tasks, few samples")
    args = parser.parse_args()
    tasks, samples, marks = (2_000, 5, 5) if args.tiny else (100_000, 21, 30)
    rng = random.Random(11)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "ralph.db"
        built = time.perf_counter()
        store = seed(db, tasks, rng)
        build_s = time.perf_counter() - built
        local = in_process(store, samples)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
        env["RALPH_DB"] = str(db)
        server = subprocess.Popen(
            [sys.executable, "-m", "ralph", "web", "--port", str(port)],
            cwd=tmp,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    get(port, "/static/style.css")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            remote = over_http(port, samples)
            lat, events = latency(port, db, marks)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=15)
        store.close()
    print(f"## Dashboard (`ralph web`)\n\n{tasks:,} tasks (built in {build_s:.0f} s), SQLite.\n")
    print(table("Server time per page, in process (ms)", ["page", "median", "p90"], local))
    print()
    print(table("HTTP round trip on loopback (ms)", ["page", "median", "p90"], remote))
    print()
    lat_ms = sorted(x * 1000 for x in lat)
    print(
        table(
            f"Event to screen with {WORKERS} busy workers ({len(lat)} events, "
            f"{events} worker events meanwhile)",
            ["median ms", "p90 ms", "max ms"],
            [
                [
                    f"{statistics.median(lat_ms):.0f}",
                    f"{percentile(lat_ms, 0.9):.0f}",
                    f"{max(lat_ms):.0f}",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
