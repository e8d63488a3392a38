#!/usr/bin/env python3
"""Fake agent: writes work/<task>.txt and damages the main checkout's git dir, as a git killed
inside an agent's session would: `lock` (default) leaves an empty `index.lock`; `index` empties
the index itself, as a process that opened `index.lock` while a git held it leaves it once that
git renames the lock. Task ids after it limit the damage to those tasks."""

import os
import subprocess
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
common = subprocess.run(
    ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
    check=True,
    capture_output=True,
    text=True,
).stdout.strip()
damaged = "index" if sys.argv[1:2] == ["index"] else "index.lock"
if task in sys.argv[2:] or not sys.argv[2:]:
    Path(common, damaged).write_bytes(b"")
Path("work").mkdir(exist_ok=True)
Path("work", f"{task}.txt").write_text(f"{task} was here\n")
