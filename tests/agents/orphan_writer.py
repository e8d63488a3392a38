#!/usr/bin/env python3
"""Zoo agent: writes out/<task>.txt, then appends to out/<task>.late every 0.1 s for 60 s.

Meant to be orphaned: a test SIGKILLs the worker running it, and it lives on (own session),
writing into the workspace (and lives on if the workspace is removed under it). It does not
ignore SIGTERM. With ZOO_PID_DIR set it writes its pid to $ZOO_PID_DIR/orphan_<task>.pid; if that
file already exists (a later attempt), it only writes out/<task>.txt and exits 0.
"""

import os
import sys
import time
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
out = Path("out")
out.mkdir(exist_ok=True)
(out / f"{task}.txt").write_text(f"{task} written\n")
pid_dir = os.environ.get("ZOO_PID_DIR")
if pid_dir:
    pid_file = Path(pid_dir, f"orphan_{task}.pid")
    if pid_file.exists():
        print("second attempt: done at once")
        sys.exit(0)
    pid_file.write_text(f"{os.getpid()}\n")
print("writing late output", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with open(out / f"{task}.late", "a") as fh:
            fh.write(f"{time.time():.3f}\n")
    except OSError:
        pass  # its workspace was removed under it: a real agent would go on talking to its model
    time.sleep(0.1)
