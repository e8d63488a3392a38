#!/usr/bin/env python3
"""Fake agent: writes work/<task>.txt and leaves an empty `index.lock` in the repository's
common git dir (the main checkout's), as a git killed inside an agent's session would."""

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
Path(common, "index.lock").write_bytes(b"")
Path("work").mkdir(exist_ok=True)
Path("work", f"{task}.txt").write_text(f"{task} was here\n")
