#!/usr/bin/env python3
"""An agent that uses the task store through the real `ralph` CLI and `$RALPH_DB`, from its own
cwd (the checkout or a worker's worktree): `ralph show $RALPH_TASK_ID --json`, files one
follow-up with `ralph add "..." --discovered-from $RALPH_TASK_ID` (unless its task is itself a
follow-up) and reads `ralph list --json`. Any failing call makes it exit 1 with the call's
stderr. It records what it saw as `$ZOO_OUT/<task>.json` (outside the repository): the
RALPH_DB it was given, its cwd, the follow-up's id and the ids the list showed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]


def ralph(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ralph", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(f"ralph {' '.join(args)} failed: {done.stderr}")
        sys.exit(1)
    return done.stdout


shown = json.loads(ralph("show", task, "--json"))
follow_up = None
if shown["discovered_from"] is None:
    added = ralph("add", f"Found while doing {task}", "--discovered-from", task, "--json")
    follow_up = json.loads(added)["id"]
listed = [t["id"] for t in json.loads(ralph("list", "--json"))]
record = {
    "db": os.environ["RALPH_DB"],
    "cwd": os.getcwd(),
    "follow_up": follow_up,
    "listed": listed,
}
Path(os.environ["ZOO_OUT"], f"{task}.json").write_text(json.dumps(record))
Path("done").mkdir(exist_ok=True)
Path("done", f"{task}.txt").write_text(f"{task}\n")
