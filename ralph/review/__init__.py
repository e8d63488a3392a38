"""Where a finished task's commit goes: straight onto the target, or to a person first.

`[land] mode` (or `ralph run --land`):
- "target" (the default): the commit lands on the target branch and the task is done.
- "review": the commit waits on `refs/heads/ralph/review/<task>` and the task in the status
  `review` until `ralph approve` lands it (or `ralph reject` sends it back with a note).
  `gate.py` is the worker's step, `desk.py` the decisions, the store's part is
  ralph/store/reviews.py.

This module stays light: ralph.config imports it at every CLI start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ralph.durations import parse_duration
from ralph.errors import ConfigError, UsageError

LAND_MODES = ("target", "review", "pr")
POLL = 60.0  # seconds between two looks at the open pull requests
REVIEW_BRANCHES = "refs/heads/ralph/review/"


def review_branch(task_id: str) -> str:
    """The ref a task's commit waits on for review."""
    return REVIEW_BRANCHES + task_id


@dataclass
class LandSettings:
    """The `[land]` table."""

    mode: str = "target"
    poll: float = POLL  # [land] poll: how often a run looks at its open pull requests
    repo: str | None = None  # [land] repo: the GitHub OWNER/NAME (default: the remote's URL)

    @property
    def review(self) -> bool:
        return self.mode != "target"

    @property
    def pr(self) -> bool:
        return self.mode == "pr"


def parse_land(value: Any, source: str) -> LandSettings:
    """Validate a `[land]` table (errors name the file and the key)."""
    if not isinstance(value, dict):
        raise ConfigError(f'{source}: land must be a table, e.g. [land] mode = "review"')
    unknown = set(value) - {"mode", "poll", "repo"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown key land.{sorted(unknown)[0]}", hint="known: mode, poll, repo"
        )
    mode = value.get("mode", "target")
    if mode not in LAND_MODES:
        raise ConfigError(
            f"{source}: land.mode must be one of {', '.join(map(repr, LAND_MODES))}, got {mode!r}"
        )
    poll = value.get("poll", POLL)
    try:
        poll = parse_duration(poll, bare_unit="s", what="land.poll")
    except UsageError as exc:
        raise ConfigError(
            f"{source}: {exc.message}", hint='e.g. poll = 60 (seconds) or "2m"'
        ) from None
    repo = value.get("repo")
    if repo is not None and (not isinstance(repo, str) or repo.count("/") not in (1, 2)):
        raise ConfigError(f'{source}: land.repo must be "OWNER/NAME", got {repo!r}')
    return LandSettings(mode=mode, poll=poll, repo=repo)
