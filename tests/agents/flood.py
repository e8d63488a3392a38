#!/usr/bin/env python3
"""Fake agent: prints argv[1] megabytes (default 100) of output, then edits a file."""

import os
import sys
from pathlib import Path

sys.stdin.read()
megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 100
line = ("x" * 1023 + "\n").encode()
chunk = line * 1024
out = sys.stdout.buffer
for _ in range(megabytes):
    out.write(chunk)
out.flush()
Path(f"{os.environ['RALPH_TASK_ID']}.txt").write_text("flooded\n")
