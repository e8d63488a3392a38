#!/usr/bin/env python3
"""Zoo agent: `git rm` a tracked file, ZOO_RM (may hold `{task}`; default rm_{task}.txt).

Imitates agents that delete with `git rm` (the index then already holds the deletion).
"""

import os
import subprocess
import sys

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
path = os.environ.get("ZOO_RM", "rm_{task}.txt").format(task=task)
subprocess.run(["git", "rm", "-q", "--", path], check=True)
print(f"removed {path}")
