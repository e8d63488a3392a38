"""A store client run as a separate process by the contention and crash tests.

    store_worker.py race DB WORKER GOFILE         claim_next + done until the queue is empty
    store_worker.py hold DB TASK WORKER LEASE     claim, print the claim, then wait to be killed
    store_worker.py zombie DB TASK WORKER LEASE   claim, renew every lease/10 until refused,
                                                  then try done with the old token

Each prints JSON lines on stdout; errors are reported, never raised, so the test sees them all.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from ralph.errors import LeaseLostError
from ralph.store import open_store


def say(**data: object) -> None:
    print(json.dumps(data), flush=True)


def race(db: str, worker: str, gofile: str) -> None:
    """Wait for the start signal, then drain the queue as fast as possible."""
    store = open_store(db)
    say(ready=os.getpid())
    deadline = time.monotonic() + 60
    while not Path(gofile).exists():
        if time.monotonic() > deadline:
            say(claims=0, errors=["start signal never came"], start=0, end=0)
            return
        time.sleep(0.002)
    claims, errors = 0, []
    start = time.time()
    while len(errors) < 10:
        try:
            claim = store.claim_next(worker, lease=120)
            if claim is None:
                break
            store.done(claim.task_id, token=claim.token, worker=worker)
            claims += 1
        except Exception as exc:  # every error is a finding: report it, don't die
            errors.append(f"{type(exc).__name__}: {exc}")
    say(claims=claims, errors=errors, start=start, end=time.time())


def hold(db: str, task: str, worker: str, lease: float) -> None:
    claim = open_store(db).claim(task, worker, lease=lease)
    say(token=claim.token, expires_at=claim.expires_at)
    time.sleep(600)  # until SIGKILL


def zombie(db: str, task: str, worker: str, lease: float) -> None:
    """Renew like a lease renewer thread; once refused, try to finish with the old token."""
    store = open_store(db)
    claim = store.claim(task, worker, lease=lease)
    say(token=claim.token, expires_at=claim.expires_at)
    outcome: dict[str, object] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(lease / 10)
        try:
            store.renew(task, worker, claim.token)
        except Exception as exc:
            outcome["renew"] = [type(exc).__name__, isinstance(exc, LeaseLostError)]
            break
        say(renewed=True)
    try:
        store.done(task, token=claim.token, worker=worker)
        outcome["done"] = ["accepted", False]
    except Exception as exc:
        outcome["done"] = [type(exc).__name__, isinstance(exc, LeaseLostError)]
    say(**outcome)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("race")
    p.add_argument("db")
    p.add_argument("worker")
    p.add_argument("gofile")
    for name in ("hold", "zombie"):
        p = sub.add_parser(name)
        p.add_argument("db")
        p.add_argument("task")
        p.add_argument("worker")
        p.add_argument("lease", type=float)
    args = parser.parse_args()
    if args.command == "race":
        race(args.db, args.worker, args.gofile)
    elif args.command == "hold":
        hold(args.db, args.task, args.worker, args.lease)
    else:
        zombie(args.db, args.task, args.worker, args.lease)


if __name__ == "__main__":
    main()
