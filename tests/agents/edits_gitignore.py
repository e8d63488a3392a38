#!/usr/bin/env python3
"""Zoo agent: adds `.aider*` to .gitignore (unless there) as aider does, writes its chat history
file .aider.chat.history.md and out/<task>.txt.

Imitates aider run without --no-gitignore.
"""

import os
import sys
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
ignore = Path(".gitignore")
text = ignore.read_text() if ignore.exists() else ""
if ".aider*" not in text.splitlines():
    if text and not text.endswith("\n"):
        text += "\n"
    ignore.write_text(text + ".aider*\n")
with open(".aider.chat.history.md", "a") as fh:
    fh.write(f"# aider chat for {task}\n")
target = Path(f"out/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} by aider\n")
print("Added .aider* to .gitignore")
