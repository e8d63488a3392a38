#!/usr/bin/env python3
"""Fake agent that leaves a child process running when it exits; argv[1] says which kind.

- `hold-stdout`: a child in the agent's group that keeps the stdout/stderr pipes open.
- `ignore-term`: a child that notes SIGTERM in $ZOO_PID_DIR/term_<pid> and keeps running.
- `new-group`: a child in its own process group (same session) without RALPH_ATTEMPT in its env.
- `scrubbed-setsid`: a child in a new session without RALPH_ATTEMPT; the agent exits only once
  $ZOO_PID_DIR/go exists (the test creates it after ralph has seen the child).
- `setsid-hang`: a child in a new session (env inherited), then the agent hangs.
Each child writes its pid to $ZOO_PID_DIR/child.pid once it is set up; the agent waits for that.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import os, signal, sys, time
from pathlib import Path
pid_dir = Path(sys.argv[1])
mode = sys.argv[2]
if mode == "ignore-term":
    def noted(signum, frame):
        (pid_dir / f"term_{os.getpid()}").write_text("SIGTERM\n")
    signal.signal(signal.SIGTERM, noted)
elif mode == "new-group":
    os.setpgid(0, 0)
elif mode in ("scrubbed-setsid", "setsid-hang"):
    os.setsid()
tmp = pid_dir / "child.pid.tmp"
tmp.write_text(f"{os.getpid()}\n")
os.replace(tmp, pid_dir / "child.pid")
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    time.sleep(0.05)
"""


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            sys.exit(f"{path} never appeared")
        time.sleep(0.02)


sys.stdin.read()
mode = sys.argv[1]
pid_dir = Path(os.environ["ZOO_PID_DIR"])
env = dict(os.environ)
if mode in ("new-group", "scrubbed-setsid"):
    env.pop("RALPH_ATTEMPT", None)
quiet = mode != "hold-stdout"
subprocess.Popen(
    [sys.executable, "-c", CHILD, str(pid_dir), mode],
    env=env,
    stdin=subprocess.DEVNULL,
    stdout=subprocess.DEVNULL if quiet else None,
    stderr=subprocess.DEVNULL if quiet else None,
)
wait_for(pid_dir / "child.pid")
print(f"left a child running ({mode})", flush=True)
if mode == "scrubbed-setsid":
    wait_for(pid_dir / "go")
if mode == "setsid-hang":
    while True:
        time.sleep(0.1)
