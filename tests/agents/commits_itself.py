#!/usr/bin/env python3
"""Zoo agent that commits on its own: two commits of out/<task>.txt, the second edits it.

Imitates agents whose prompt (or habit) says "commit your work": claude, codex and aider do.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
target = Path(f"out/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task}: first\n")
subprocess.run(["git", "add", "--", str(target)], check=True)
subprocess.run(["git", "commit", "-q", "-m", f"agent: {task}"], check=True)
target.write_text(f"{task}: first\n{task}: second\n")
subprocess.run(["git", "add", "--", str(target)], check=True)
subprocess.run(["git", "commit", "-q", "-m", f"agent: {task} again"], check=True)
print(f"committed {target} twice")
