#!/usr/bin/env python3
"""Fake agent: writes work/<task>.txt (or the file named by argv[1]) and exits 0.

With RECORD_PROMPTS set, appends its prompt to that file first (tests read what it was told).
"""

import os
import sys
from pathlib import Path

prompt = sys.stdin.read()
if os.environ.get("RECORD_PROMPTS"):
    with open(os.environ["RECORD_PROMPTS"], "a") as f:
        f.write(prompt + "\n=====\n")
task = os.environ["RALPH_TASK_ID"]
target = Path(sys.argv[1] if len(sys.argv) > 1 else f"work/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} was here\n")
print(f"edited {target}")
