#!/usr/bin/env python3
"""Fake agent hitting a rate limit the way `--agent-cmd` reports one: it prints
`ralph: rate-limited retry-after <argv[1]>` on stderr and exits 75. With `LIMIT_ONCE` set, only
while that file does not exist (it creates it): the next launch writes work/<task>.txt and exits 0.
"""

import os
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
once = os.environ.get("LIMIT_ONCE")
if not once or not Path(once).exists():
    if once:
        Path(once).write_text("limited\n")
    print(f"ralph: rate-limited retry-after {sys.argv[1]}", file=sys.stderr, flush=True)
    sys.exit(75)
target = Path(f"work/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} was here\n")
