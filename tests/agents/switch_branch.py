#!/usr/bin/env python3
"""Zoo agent: creates and checks out branch agent/<task>, then writes and commits out/<task>.txt.

Imitates agents that "start a feature branch" before working and leave the checkout there.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
subprocess.run(["git", "checkout", "-q", "-b", f"agent/{task}"], check=True)
target = Path(f"out/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} on its own branch\n")
subprocess.run(["git", "add", "--", str(target)], check=True)
subprocess.run(["git", "commit", "-q", "-m", f"agent: {task} on agent/{task}"], check=True)
print(f"committed on agent/{task}")
