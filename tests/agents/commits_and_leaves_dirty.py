#!/usr/bin/env python3
"""Zoo agent: commits out/<task>.txt itself, then leaves out/<task>.extra uncommitted.

Imitates an agent that commits part of its work and keeps editing after the commit.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
target = Path(f"out/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} committed by the agent\n")
subprocess.run(["git", "add", "--", str(target)], check=True)
subprocess.run(["git", "commit", "-q", "-m", f"agent: {task}"], check=True)
Path(f"out/{task}.extra").write_text(f"{task} left uncommitted\n")
print("committed one file, left another")
