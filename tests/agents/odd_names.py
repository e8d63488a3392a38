#!/usr/bin/env python3
"""Zoo agent: writes files with awkward names under out/<task>/, and one file into .ralph/.

Names: a space, unicode, a leading dash, a newline, `*`, pathspec magic `:(exclude)x`, plus a
symlink, an executable script, an empty directory and a 5 MB binary. With ZOO_NAMES set to a JSON
file holding a list of names, it writes exactly those (content: the name itself) instead.
Imitates agents writing generated or user-named files that a shell-minded committer mangles.
"""

import json
import os
import random
import sys
from pathlib import Path

ODD = [
    "with space.txt",
    "ünïcødé-名前.txt",
    "-rf.txt",
    "new\nline.txt",
    "*",
    ":(exclude)x",
    "tab\there.txt",
    'quote"s.txt',
    "back\\slash.txt",
    "trailing space ",
    "--",
    ".hidden",
]

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
base = Path("out", task)
base.mkdir(parents=True, exist_ok=True)
if os.environ.get("ZOO_NAMES"):
    names = json.loads(Path(os.environ["ZOO_NAMES"]).read_text())
    for name in names:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(name + "\n")
    print(f"wrote {len(names)} files")
    sys.exit(0)
for name in ODD:
    (base / name).write_text(f"{name}\n")
(base / "link").symlink_to("with space.txt")
script = base / "run.sh"
script.write_text("#!/bin/sh\necho run\n")
script.chmod(0o755)
(base / "empty").mkdir(exist_ok=True)
(base / "blob.bin").write_bytes(random.Random(task).randbytes(5 * 1024 * 1024))
ralph_dir = Path(".ralph")
ralph_dir.mkdir(exist_ok=True)
(ralph_dir / f"zoo-{task}.txt").write_text("agents must not get this committed\n")
print(f"wrote odd names under {base}")
