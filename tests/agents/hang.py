#!/usr/bin/env python3
"""Fake agent: edits a file, writes its pid to $AGENT_PID_FILE, then hangs.

`--silent` prints nothing after starting (for idle timeouts); otherwise it prints every 0.1 s.
A child process is started too, so tests can see the whole process group die.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

sys.stdin.read()
Path("partial.txt").write_text("work in progress\n")
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
pid_file = os.environ.get("AGENT_PID_FILE")
if pid_file:
    Path(pid_file + ".tmp").write_text(f"{os.getpid()} {child.pid}\n")
    os.replace(pid_file + ".tmp", pid_file)
print("working", flush=True)
while True:
    time.sleep(0.1)
    if "--silent" not in sys.argv:
        print("still working", flush=True)
