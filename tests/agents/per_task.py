#!/usr/bin/env python3
"""Fake agent that behaves per task: `PER_TASK` is JSON {task id: [script, args...]} naming
another agent of this folder; the task's entry is exec'd (stdin, env and cwd kept). A task
not named runs `edit.py`."""

import json
import os
import sys
from pathlib import Path

here = Path(__file__).parent
plan = json.loads(os.environ.get("PER_TASK", "{}"))
script, *args = plan.get(os.environ.get("RALPH_TASK_ID", ""), ["edit.py"])
os.execv(sys.executable, [sys.executable, str(here / script), *args])
