#!/usr/bin/env python3
"""Fake agent: writes work/<task>.txt and empties the main checkout's index, as a process that
opened `index.lock` while a git held it leaves the index once that git renames the lock."""

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
Path(common, "index").write_bytes(b"")
Path("work").mkdir(exist_ok=True)
Path("work", f"{task}.txt").write_text(f"{task} was here\n")
