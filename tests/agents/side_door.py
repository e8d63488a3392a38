#!/usr/bin/env python3
"""Zoo agent that hides or undoes work through one of git's side doors (DESIGN.md).

Every task writes `out/<task>.txt`. The task named by `SIDE_TASK` (default T1), on its first
attempt only, also does what `SIDE_DOOR` says:
- `exclude`: appends `*.txt` to `.git/info/exclude` (shared by every worktree) first;
- `stash`: then runs `git stash -u` (the work moves to refs/stash);
- `rewind`: first runs `git reset --hard HEAD~1`;
- `replace`: first runs `git replace HEAD HEAD~1` (history then looks one commit shorter);
- `wait`: nothing more.
Then, with `SIDE_FLAGS` (a folder), it writes `<task>.waiting` there; with `SIDE_GO=1` it waits
for `<task>.go` (the test commits as the user meanwhile, or starts a second run); with
`SIDE_WAIT_FOR` (a task id) it waits until that task's attempt has ended (its `result.json`), so
another worker collects while this agent's change is in place. With `SIDE_AFTER=1` the other
tasks wait for `<SIDE_TASK>.waiting` before they write. Waits give up after 120 s.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
first = Path(os.environ.get("RALPH_RUN_DIR", "1")).name == "1"
side = os.environ.get("SIDE_TASK", "T1")
door = os.environ.get("SIDE_DOOR", "") if task == side and first else ""
flags = os.environ.get("SIDE_FLAGS")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def wait_for(found, what: str) -> None:
    deadline = time.monotonic() + 120
    while not found():
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {what}")
        time.sleep(0.05)


if task != side and flags and os.environ.get("SIDE_AFTER"):
    wait_for((Path(flags) / f"{side}.waiting").exists, f"{side}.waiting")
if door == "exclude":
    exclude = Path(git("rev-parse", "--git-path", "info/exclude").strip())
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a") as fh:
        fh.write("*.txt\n")
if door == "rewind":
    git("reset", "-q", "--hard", "HEAD~1")
if door == "replace":
    git("replace", git("rev-parse", "HEAD").strip(), git("rev-parse", "HEAD~1").strip())
target = Path(f"out/{task}.txt")
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(f"{task} was here\n")
if door == "stash":
    git("stash", "push", "-q", "-u", "-m", f"agent stash of {task}")
if door and flags:
    (Path(flags) / f"{task}.waiting").write_text(str(os.getpid()))
if door and flags and os.environ.get("SIDE_GO"):
    wait_for((Path(flags) / f"{task}.go").exists, f"{task}.go")
other = os.environ.get("SIDE_WAIT_FOR")
if door and other:
    root = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir").strip()).parent
    runs = root / ".ralph" / "runs" / other
    wait_for(lambda: any(runs.glob("*/result.json")), f"{other}'s attempt to end")
print(f"wrote {target}" + (f" and used {door}" if door else ""))
