#!/usr/bin/env python3
"""Zoo agent that does everything to git a real agent might: commits out/<task>.txt on the
branch it was given, switches to a branch of its own and commits again, stashes a scratch file
(`git stash -u`), tags its work, and with TOURIST_REWIND=1 ends with `git reset --hard HEAD~3`,
below the commit it started from (its work tree then undoes the base's last commit).
"""

import os
import subprocess
import sys
from pathlib import Path


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, stdout=subprocess.DEVNULL)


sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
target = Path(f"out/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task}: first\n")
git("add", "--", str(target))
git("commit", "-q", "-m", f"agent: {task}")
git("checkout", "-q", "-b", f"agent/{task}")
target.write_text(f"{task}: first\n{task}: second\n")
git("commit", "-q", "-am", f"agent: {task} on its own branch")
Path(f"scratch-{task}.txt").write_text("scratch\n")
git("stash", "-u", "-q")
git("tag", f"agent-{task}")
if os.environ.get("TOURIST_REWIND") == "1":
    git("reset", "-q", "--hard", "HEAD~3")
print(f"toured git with {target}")
