#!/usr/bin/env python3
"""Fake agent held at a gate: records its launch, waits until its gate file exists, writes
out/<task>.txt, notes in GATED_DONE/<task> that it finished, and exits 0.

Env: GATE_<task> or GATE (the file it waits for; neither: no wait), GATED_LAUNCHES (appended
"<task> <pid>"), GATED_DONE (a folder, optional).
"""

import os
import sys
import time
from pathlib import Path

task = os.environ["RALPH_TASK_ID"]
sys.stdin.read()
with open(os.environ["GATED_LAUNCHES"], "a") as fh:
    fh.write(f"{task} {os.getpid()}\n")
gate = os.environ.get(f"GATE_{task}") or os.environ.get("GATE")
while gate and not Path(gate).exists():
    time.sleep(0.05)
out = Path("out")
out.mkdir(exist_ok=True)
(out / f"{task}.txt").write_text(f"{task} by pid {os.getpid()}\n")
if os.environ.get("GATED_DONE"):
    done = Path(os.environ["GATED_DONE"])
    done.mkdir(parents=True, exist_ok=True)
    (done / task).write_text("")
