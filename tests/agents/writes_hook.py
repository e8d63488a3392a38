#!/usr/bin/env python3
"""Zoo agent: installs failing git hooks, then writes out/<task>.txt.

Writes executable `pre-commit` and `commit-msg` hooks that fail (and note that they ran in
<git common dir>/zoo-hooks-ran) into the repository's hooks dir; with ZOO_HOOKSPATH=1 it puts them
in <git common dir>/evil-hooks and runs `git config core.hooksPath` to point there instead.
Imitates agents that set up husky/pre-commit while working.
"""

import os
import stat
import subprocess
import sys
from pathlib import Path


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
common = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir"))
evidence = common / "zoo-hooks-ran"
if os.environ.get("ZOO_HOOKSPATH") == "1":
    hooks = common / "evil-hooks"
    git("config", "core.hooksPath", str(hooks))
else:
    hooks = Path(git("rev-parse", "--path-format=absolute", "--git-path", "hooks"))
hooks.mkdir(parents=True, exist_ok=True)
for name in ("pre-commit", "commit-msg"):
    hook = hooks / name
    hook.write_text(f'#!/bin/sh\necho "{name} from {task}" >> "{evidence}"\nexit 1\n')
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
target = Path(f"out/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} with hooks installed\n")
print(f"installed failing hooks in {hooks}")
