#!/usr/bin/env python3
"""Verify command that counts its runs per task (in $VERIFY_COUNTS/<task>) and, on the second
run for $VERIFY_BLOCK_TASK (the re-verify on a newer head), touches $VERIFY_STARTED and waits
until the file $VERIFY_UNTIL exists. Passes otherwise.
"""

import os
import time
from pathlib import Path

task = os.environ["RALPH_TASK_ID"]
counts = Path(os.environ["VERIFY_COUNTS"])
counts.mkdir(parents=True, exist_ok=True)
mine = counts / task
runs = len(mine.read_text()) + 1 if mine.exists() else 1
mine.write_text("x" * runs)
if task == os.environ.get("VERIFY_BLOCK_TASK") and runs == 2:
    Path(os.environ["VERIFY_STARTED"]).write_text("")
    until = Path(os.environ["VERIFY_UNTIL"])
    while not until.exists():
        time.sleep(0.05)
print(f"verify run {runs} of {task}: ok")
