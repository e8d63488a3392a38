#!/usr/bin/env python3
"""Scripted agent for the parallel-worker tests; behaviour comes from PA_* environment variables.

PA_FILE      file to write, `{task}` replaced by the task id (default work/{task}.txt); it gets
             one line naming the task and the worker.
PA_STARTED   folder: each run touches `<task>.<pid>` there first (tests wait on these).
PA_BARRIER   wait until this many runs have started (proves workers ran at the same time).
PA_SLEEP     seconds to sleep after writing; PA_SLOW_ONCE: only the first run of all sleeps.
RECORD_PROMPTS  append the prompt to this file.
"""

import os
import sys
import time
from pathlib import Path

prompt = sys.stdin.read()
task, worker = os.environ["RALPH_TASK_ID"], os.environ["RALPH_WORKER"]
if os.environ.get("RECORD_PROMPTS"):
    with open(os.environ["RECORD_PROMPTS"], "a") as f:
        f.write(f"== {task}\n{prompt}\n")
started = Path(os.environ["PA_STARTED"]) if os.environ.get("PA_STARTED") else None
first = True
if started is not None:
    started.mkdir(parents=True, exist_ok=True)
    first = not any(started.iterdir())
    (started / f"{task}.{os.getpid()}").write_text(worker)
    need = int(os.environ.get("PA_BARRIER", "0"))
    deadline = time.time() + 60
    while len(list(started.iterdir())) < need:
        if time.time() > deadline:
            sys.exit("barrier: the other workers never started")
        time.sleep(0.02)
target = Path(os.environ.get("PA_FILE", "work/{task}.txt").format(task=task))
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} by {worker}\n")
if not os.environ.get("PA_SLOW_ONCE") or first:
    time.sleep(float(os.environ.get("PA_SLEEP", "0")))
print(f"wrote {target}")
