#!/usr/bin/env python3
"""Zoo agent: `git checkout --detach`, then writes and commits out/<task>.txt on the detached HEAD.

Imitates agents that check out a commit to look at it (or bisect) and keep working there.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
subprocess.run(["git", "checkout", "-q", "--detach"], check=True)
target = Path(f"out/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} on a detached HEAD\n")
subprocess.run(["git", "add", "--", str(target)], check=True)
subprocess.run(["git", "commit", "-q", "-m", f"agent: {task} detached"], check=True)
print("committed on a detached HEAD")
