"""Follow-up tasks filed from inside the sandbox, where the store is out of reach.

The default prompt tells agents to file work they find with
`ralph add "..." --discovered-from $RALPH_TASK_ID`. Inside the sandbox `.ralph/` is hidden, so
the sandboxed environment names a queue file in the attempt's run dir (`RALPH_FOLLOWUPS`):
`ralph add --discovered-from` appends the task there as one JSON line and says so, and when the
agent has exited the worker files them itself, each as a follow-up of the task the attempt was
for (whatever id the agent named) and under the same `max_discovered` cap.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

VAR = "RALPH_FOLLOWUPS"
FILE = "followups.jsonl"
MAX_LINES = 200  # read no further: a flooding agent meets the cap long before
MAX_BYTES = 1 << 20
_STRINGS = ("title", "description", "parent", "id")
_LISTS = ("blocked_by", "requires", "labels")


def queue(path: Path, spec: dict[str, Any]) -> None:
    """Append one task (the fields of `ralph add`) to the queue file."""
    with open(path, "a") as out:
        out.write(json.dumps(spec) + "\n")


def collect(path: Path, task_id: str) -> tuple[list[dict[str, Any]], int]:
    """(the queued tasks as store specs, each discovered from `task_id`; lines skipped as
    malformed). The queue file is the agent's to write: only known fields of the right type
    are kept."""
    text = read_own(path, MAX_BYTES).decode("utf-8", "replace")
    lines = text.splitlines()[:MAX_LINES]
    specs, skipped = [], 0
    for line in lines:
        try:
            raw = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if not isinstance(raw, dict) or not isinstance(raw.get("title"), str):
            skipped += 1
            continue
        spec: dict[str, Any] = {"discovered_from": task_id}
        spec.update({k: raw[k] for k in _STRINGS if isinstance(raw.get(k), str) and raw[k]})
        for key in _LISTS:
            value = raw.get(key)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                spec[key] = value
        if isinstance(raw.get("priority"), int) and not isinstance(raw["priority"], bool):
            spec["priority"] = raw["priority"]
        specs.append(spec)
    return specs, skipped


def read_own(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of a file the agent wrote, read on the host: a regular file only,
    never through a symlink (it could name any file the host can read); b"" otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, limit)
    finally:
        os.close(fd)
