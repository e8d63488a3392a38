#!/usr/bin/env python3
"""Zoo agent: `git mv` a tracked file, ZOO_SRC -> ZOO_DST.

Both may hold `{task}`; the defaults are a_{task}.txt -> b_{task}.txt, so tasks do not collide.
Imitates agents that rename with `git mv` (the index then already holds the rename).
"""

import os
import subprocess
import sys

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
src = os.environ.get("ZOO_SRC", "a_{task}.txt").format(task=task)
dst = os.environ.get("ZOO_DST", "b_{task}.txt").format(task=task)
subprocess.run(["git", "mv", "--", src, dst], check=True)
print(f"renamed {src} to {dst}")
