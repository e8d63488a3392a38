#!/usr/bin/env python3
"""Fake agent for the dashboard tests: talks claude's stream-json, waits at a gate, edits a file.

WEB_GATE is a folder the test controls: the agent prints its first turns, then waits until
`<gate>/<task id>.go` or `<gate>/all.go` exists (so a test sees it busy for as long as it
needs), writes work/<task>.txt and prints a result line with a cost. With `<gate>/<task id>.fail`
present it exits 1 instead. With `<gate>/<task id>.twostep` it prints its tool call and then waits
again, for `<gate>/<task id>.end`, before the result (a transcript seen growing while it runs).
"""

import json
import os
import sys
import time
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
gate = Path(os.environ["WEB_GATE"])


def emit(obj):
    print(json.dumps(obj), flush=True)


emit({"type": "system", "subtype": "init", "session_id": f"s-{task}", "model": "fake-web"})
emit(
    {
        "type": "assistant",
        "message": {"content": [{"type": "text", "text": f"Working on {task} <b>now</b>"}]},
    }
)
deadline = time.monotonic() + 120
while not (gate / f"{task}.go").exists() and not (gate / "all.go").exists():
    if time.monotonic() > deadline:
        sys.exit("gave up waiting at the gate")
    time.sleep(0.05)
if (gate / f"{task}.fail").exists():
    print(f"{task}: told to fail", file=sys.stderr)
    sys.exit(1)
target = Path(f"work/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} was here\n")
emit(
    {
        "type": "assistant",
        "message": {
            "content": [{"type": "tool_use", "name": "Write", "input": {"file_path": str(target)}}]
        },
    }
)
emit({"type": "user", "message": {"content": [{"type": "tool_result", "content": "written"}]}})
if (gate / f"{task}.twostep").exists():
    while not (gate / f"{task}.end").exists():
        if time.monotonic() > deadline:
            sys.exit("gave up waiting at the second gate")
        time.sleep(0.05)
emit(
    {
        "type": "result",
        "subtype": "success",
        "result": f"Finished {task}",
        "total_cost_usd": 0.0125,
        "usage": {"input_tokens": 1200, "output_tokens": 340},
        "num_turns": 3,
    }
)
