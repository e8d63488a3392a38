#!/usr/bin/env python3
"""An agent for crash tests: records each launch, works a random while, writes out/<task>.txt.

A launch for a task whose commit already landed (refs/ralph/tasks/<id> exists) is recorded as
LATE: ralph must never run the agent again for finished work.
Env: CHAOS_LAUNCHES (file appended to), CHAOS_MIN/CHAOS_MAX (seconds of work); with CHAOS_GATE
set, the work starts only once that file exists (a test orders its events without sleeping).
With CHAOS_STOPS set, a SIGTERM (ralph stopping the attempt) appends "<task> <pid> <epoch>" to
that file before the agent exits.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

task = os.environ["RALPH_TASK_ID"]
sys.stdin.read()
landed = (
    subprocess.run(
        ["git", "rev-parse", "-q", "--verify", f"refs/ralph/tasks/{task}"],
        capture_output=True,
    ).returncode
    == 0
)
with open(os.environ["CHAOS_LAUNCHES"], "a") as fh:
    fh.write(f"{task} {os.getpid()} {'LATE' if landed else 'ok'}\n")
if stops := os.environ.get("CHAOS_STOPS"):

    def stopped(signum: int, frame: object) -> None:
        with open(stops, "a") as fh:
            fh.write(f"{task} {os.getpid()} {time.time():.3f}\n")
        os._exit(143)

    signal.signal(signal.SIGTERM, stopped)
if gate := os.environ.get("CHAOS_GATE"):
    deadline = time.monotonic() + 300
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
time.sleep(
    random.uniform(
        float(os.environ.get("CHAOS_MIN", "0.2")), float(os.environ.get("CHAOS_MAX", "1.0"))
    )
)
out = Path("out")
out.mkdir(exist_ok=True)
(out / f"{task}.txt").write_text(f"{task} by pid {os.getpid()}\n")
