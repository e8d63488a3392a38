#!/usr/bin/env python3
"""Fake agent that reports its limits in the command agents' protocol (ralph/agents/command.py):

- `rate`: while the clock is before `$LIMIT_RESET` (epoch seconds), prints
  `ralph: rate-limited until <LIMIT_RESET>` on stderr and exits 75; after it, edits like edit.py;
- `auth`: prints `ralph: auth-failed invalid API key` on stderr and exits 77;
- `paid`: edits like edit.py and prints a claude-shaped result line costing `$AGENT_COST` USD.

Each launch appends `<task> <argv[1]>` to `$LAUNCHES` when set (tests read who ran what).
"""

import json
import os
import sys
import time
from pathlib import Path

mode = sys.argv[1]
sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
if os.environ.get("LAUNCHES"):
    with open(os.environ["LAUNCHES"], "a") as f:
        f.write(f"{task} {mode}\n")
if mode == "auth":
    print("ralph: auth-failed invalid API key", file=sys.stderr)
    sys.exit(77)
reset = float(os.environ.get("LIMIT_RESET", "0"))
if mode == "rate" and time.time() < reset:
    print(f"ralph: rate-limited until {reset:.3f}", file=sys.stderr)
    sys.exit(75)
target = Path(f"work/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} was here ({mode})\n")
if mode == "paid":
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "done",
        "total_cost_usd": float(os.environ["AGENT_COST"]),
        "session_id": f"s-{task}",
    }
    print(json.dumps(result))
