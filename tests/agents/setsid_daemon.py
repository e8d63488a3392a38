#!/usr/bin/env python3
"""Zoo agent: starts a daemon (double fork + setsid) that outlives it, writes out/<task>.txt.

The daemon appends a line to out/daemon_<task>.log every 0.2 s for 300 s, keeps the agent's
stdout and stderr open, and writes its pid to $ZOO_PID_DIR/daemon_<task>.pid when that is set.
Imitates an agent starting a dev server or watcher with `setsid ... &` and exiting.
"""

import os
import sys
import time
from pathlib import Path

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
out = Path("out")
out.mkdir(exist_ok=True)
log = out / f"daemon_{task}.log"
log.write_text("")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        pid_dir = os.environ.get("ZOO_PID_DIR")
        if pid_dir:
            Path(pid_dir, f"daemon_{task}.pid").write_text(f"{os.getpid()}\n")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with open(log, "a") as fh:
                fh.write(f"{time.time():.3f} still serving\n")
            time.sleep(0.2)
    os._exit(0)
os.wait()
(out / f"{task}.txt").write_text(f"{task} started a server\n")
print("started the dev server in the background", flush=True)
