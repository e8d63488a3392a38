#!/usr/bin/env python3
"""Fake agent: appends a line to the file named by argv[1] (default README.md) and writes
work/<task>.txt, then exits 0 (an agent editing a file the user has uncommitted changes in)."""

import os
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
with open(sys.argv[1] if len(sys.argv) > 1 else "README.md", "a") as fh:
    fh.write(f"{task} appended this\n")
Path("work").mkdir(exist_ok=True)
Path("work", f"{task}.txt").write_text(f"{task} was here\n")
