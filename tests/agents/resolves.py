#!/usr/bin/env python3
"""Fake agent that resolves merge conflicts: when files of its workspace hold conflict markers
(a resolution attempt, ralph/resolve.py) it keeps both sides' lines and removes the markers and
the common-base section; otherwise it appends its task's line to `shared.txt`. A resolution
prints what git says of the merge in progress (`MERGE_HEAD: <sha>`, `HEAD: <sha>`,
`unmerged: <paths>`).

Env: RESOLVES_BARRIER_DIR + RESOLVES_BARRIER=N (a task launch touches `<dir>/<task>.<pid>` and
waits until N such files exist: every task has edited before the first lands),
RESOLVES_LEAVE_MARKERS=1 (a resolution exits 0 and leaves the markers in: a bad resolution),
RESOLVES_FAIL=1 (a resolution exits 1), RESOLVES_KILL_ONCE=<file> (while the file exists, a
resolution removes it and SIGKILLs its parent, the ralph process, unsandboxed only).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]


def conflicted() -> list[Path]:
    found = []
    for path in Path(".").rglob("*"):
        if {".git", ".ralph"} & set(path.parts) or not path.is_file() or path.is_symlink():
            continue
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        if any(line.startswith("<<<<<<< ") for line in text.splitlines()):
            found.append(path)
    return found


def keep_both(text: str) -> str:
    out, in_base = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(("<<<<<<< ", ">>>>>>> ")):
            continue
        if line.startswith("|||||||"):
            in_base = True
            continue
        if line.rstrip("\n") == "=======":
            in_base = False
            continue
        if not in_base:
            out.append(line)
    return "".join(out)


files = conflicted()
if files:
    print(f"resolving {', '.join(map(str, files))}")
    for what, args in (
        ("MERGE_HEAD", ["rev-parse", "-q", "--verify", "MERGE_HEAD"]),
        ("HEAD", ["rev-parse", "-q", "--verify", "HEAD"]),
        ("unmerged", ["diff", "--name-only", "--diff-filter=U"]),
    ):  # what git itself says of the merge in progress (in the sandbox: the agent's git view)
        found = subprocess.run(["git", *args], capture_output=True, text=True).stdout.split()
        print(f"{what}: {' '.join(found)}")
    kill = os.environ.get("RESOLVES_KILL_ONCE")
    if kill and Path(kill).exists():  # SIGKILL the ralph process resolving (its worker dies)
        Path(kill).unlink()
        ralph = os.getppid()
        os.kill(ralph, signal.SIGKILL)
        sys.exit(0)
    if os.environ.get("RESOLVES_FAIL"):
        sys.exit("cannot resolve this one")
    if not os.environ.get("RESOLVES_LEAVE_MARKERS"):
        for path in files:
            path.write_text(keep_both(path.read_text()))
    sys.exit(0)

barrier = os.environ.get("RESOLVES_BARRIER_DIR")
if barrier:
    Path(barrier).mkdir(parents=True, exist_ok=True)
    Path(barrier, f"{task}.{os.getpid()}").write_text("")
    need = int(os.environ.get("RESOLVES_BARRIER", "0"))
    deadline = time.time() + 120
    while len(list(Path(barrier).iterdir())) < need:
        if time.time() > deadline:
            sys.exit("barrier: the other tasks never started")
        time.sleep(0.02)
with open("shared.txt", "a") as fh:
    fh.write(f"{task}\n")
print(f"appended {task} to shared.txt")
