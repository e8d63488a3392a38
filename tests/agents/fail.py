#!/usr/bin/env python3
"""Fake agent: leaves a half-done file behind, complains on stderr, exits with argv[1] (3)."""

import os
import sys
from pathlib import Path

sys.stdin.read()
Path("half-done.txt").write_text(f"{os.environ['RALPH_TASK_ID']} half done\n")
print("I could not do it: tests are red", file=sys.stderr)
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
