#!/usr/bin/env python3
"""Fake agent: with the file named by FILL_ONCE present (removed first), writes
work/<task>.big until the disk is full; then, or otherwise, writes work/<task>.txt, exit 0."""

import os
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
Path("work").mkdir(exist_ok=True)
once = Path(os.environ.get("FILL_ONCE", "/nonexistent"))
if once.exists():
    once.unlink()
    try:
        with open(f"work/{task}.big", "wb") as fh:
            while True:
                fh.write(bytes(1 << 16))  # zeros: a binary file, saved small
                fh.flush()
    except OSError as exc:
        print(f"writing work/{task}.big: {exc}", file=sys.stderr)
try:
    Path("work", f"{task}.txt").write_text(f"{task} was here\n")
except OSError as exc:
    print(f"writing work/{task}.txt: {exc}", file=sys.stderr)
