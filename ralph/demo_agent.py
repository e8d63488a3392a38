"""A deterministic agent for `ralph demo` and `ralph run --agent demo`: no model, no credentials,
no network.

It reads its prompt on stdin, writes `work/<task id>.md` (named after the task ralph gave it in
$RALPH_TASK_ID, or the first `Task <id>:` line of the prompt), leaves a line of learnings in
$RALPH_NOTES when ralph names that file, and prints one JSON result line shaped like
`claude -p --output-format stream-json`'s last line. It reports no cost: it spends nothing,
and an invented figure would end up in `ralph stats` and the spend totals.

Run as `python -m ralph.demo_agent` (what the `demo` adapter does) or as a file: it imports
nothing from ralph, so it works from any install.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def main() -> int:
    prompt = sys.stdin.read()
    match = re.search(r"^# Task (\S+): (.*)$", prompt, re.MULTILINE)
    task_id = os.environ.get("RALPH_TASK_ID") or (match.group(1) if match else "task")
    title = match.group(2).strip() if match else task_id
    out = Path("work") / f"{task_id}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(f"# {title}\n\nDone by the demo agent for {task_id}.\n")
    notes = os.environ.get("RALPH_NOTES")
    if notes:
        Path(notes).write_text(f"- {task_id}: each task's notes go to work/<task id>.md\n")
    words = len(prompt.split())
    print(json.dumps({"type": "system", "subtype": "init", "session_id": f"demo-{task_id}"}))
    print(
        json.dumps(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "result": f"wrote {out}",
                "session_id": f"demo-{task_id}",
                "num_turns": 1,
                "usage": {"input_tokens": words, "output_tokens": 12},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
