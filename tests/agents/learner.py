#!/usr/bin/env python3
"""An agent that learns: keeps its prompt (for the test to read), writes out/<task>.txt, and
leaves a learning in $RALPH_NOTES for the next agent (the RALPH memory)."""

import os
import sys
from pathlib import Path

task = os.environ["RALPH_TASK_ID"]
prompt = sys.stdin.read()
(Path(os.environ["LEARNER_PROMPTS"]) / f"{task}.md").write_text(prompt)
Path("out").mkdir(exist_ok=True)
Path("out", f"{task}.txt").write_text(f"{task}\n")
Path(os.environ["RALPH_NOTES"]).write_text(f"learned while doing {task}: use the out/ folder\n")
