#!/usr/bin/env python3
"""Fake agent: appends a line to each file named in argv (default README.md) and writes
work/<task>.txt, then exits 0 (an agent editing a file the user has uncommitted changes in)."""

import os
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
for name in sys.argv[1:] or ["README.md"]:
    with open(name, "a") as fh:
        fh.write(f"{task} appended this\n")
Path("work").mkdir(exist_ok=True)
Path("work", f"{task}.txt").write_text(f"{task} was here\n")
