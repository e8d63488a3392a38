"""Read task objects from JSONL or one JSON array: the shape `list --json` and `export` write.

Shared by `ralph add --from` and `ralph import`, so both name the same place for the same error.
"""

from __future__ import annotations

import json
from typing import Any

from ralph import errors

LINE_HINT = 'each line must be one task object, e.g. {"title": "Write the parser"}'


def task_objects(text: str, name: str) -> list[tuple[dict[str, Any], str]]:
    """Each task object with where it stands (`name line 7`, or `name item 3` in an array)."""
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.UsageError(
                f"{name} line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})",
                hint="give a JSON array of task objects or JSONL",
            ) from exc
        pairs = [(obj, f"{name} item {n}") for n, obj in enumerate(data, 1)]
    else:
        pairs = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                pairs.append((json.loads(line), f"{name} line {n}"))
            except json.JSONDecodeError as exc:
                raise errors.UsageError(
                    f"{name} line {n}: invalid JSON ({exc.msg} at column {exc.colno})",
                    hint=LINE_HINT,
                ) from exc
    for obj, where in pairs:
        if not isinstance(obj, dict):
            raise errors.UsageError(
                f"{where}: expected a task object, got {type(obj).__name__}", hint=LINE_HINT
            )
    return pairs
