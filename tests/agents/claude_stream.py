#!/usr/bin/env python3
"""Fake agent printing what `claude -p --output-format stream-json --verbose` prints.

argv[1]: `auth` (an api_retry line for HTTP 401, then it keeps retrying, as claude does for
minutes), `rate` (the same for 429, once: later runs succeed), `ok` (edit a file, then a result
line with total_cost_usd). Other arguments (claude's own flags) are ignored.
"""

import json
import os
import sys
import time
from pathlib import Path

mode = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in ("auth", "rate", "ok") else "ok"
sys.stdin.read()
task = os.environ.get("RALPH_TASK_ID", "task")
session = f"sess-{task}"
if os.environ.get("AGENT_PID_FILE"):
    Path(os.environ["AGENT_PID_FILE"]).write_text(f"{os.getpid()}\n")


def emit(obj):
    print(json.dumps(obj), flush=True)


emit({"type": "system", "subtype": "init", "session_id": session, "model": "claude-fake"})
marker = Path(os.environ.get("RATE_MARKER", ".rate-limited-once"))
if mode == "auth" or (mode == "rate" and not marker.exists()):
    if mode == "rate":
        marker.write_text("x")
    status, error = (401, "authentication_failed") if mode == "auth" else (429, "rate_limit")
    for attempt in range(1, 11):
        emit(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": attempt,
                "max_retries": 10,
                "retry_delay_ms": 600 * attempt,
                "error_status": status,
                "error": error,
                "session_id": session,
            }
        )
        time.sleep(30)
    emit({"type": "result", "subtype": "error", "is_error": True, "session_id": session})
    sys.exit(1)
Path(f"{task}.txt").write_text("done by claude\n")
emit(
    {
        "type": "assistant",
        "message": {"content": [{"type": "text", "text": "Done."}]},
        "session_id": session,
    }
)
emit(
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Done.",
        "session_id": session,
        "num_turns": 2,
        "total_cost_usd": 0.0123,
        "usage": {"input_tokens": 120, "output_tokens": 45},
    }
)
