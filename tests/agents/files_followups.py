#!/usr/bin/env python3
"""An agent that files follow-up tasks through the real `ralph` CLI, as the default prompt tells
agents to: `ralph add "..." --discovered-from $RALPH_TASK_ID`.

A task that was itself discovered files nothing (so the queue ends); every task writes
`done/<task id>.txt` so its commit is not empty. Usage: files_followups.py [N] (default 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
count = int(sys.argv[1]) if len(sys.argv) > 1 else 2
shown = subprocess.run(
    [sys.executable, "-m", "ralph", "show", task, "--json"],
    check=True,
    capture_output=True,
    text=True,
).stdout
if json.loads(shown)["discovered_from"] is None:
    for n in range(1, count + 1):
        subprocess.run(
            [sys.executable, "-m", "ralph", "add", f"Follow-up {n} of {task}"]
            + ["--discovered-from", task],
            check=True,
        )
Path("done").mkdir(exist_ok=True)
Path("done", f"{task}.txt").write_text(f"{task}\n")
