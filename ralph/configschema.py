"""The shape of a ralph.toml, declared once, and its type errors as one line naming the key.

msgspec checks the types and bounds (`Table`); `ralph.config` then reads what needs more than a
type (durations, commands, paths, the tables other modules own). Imported only when a config
file is read: msgspec adds ~4 ms to a start, which `ralph add` (run by agents) need not pay.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from ralph.durations import DURATIONS, parse_duration
from ralph.errors import ConfigError, UsageError

Positive = Annotated[int, msgspec.Meta(ge=1)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Text = Annotated[str, msgspec.Meta(pattern=r"\S")]  # not empty, not only spaces
Duration = int | float | str  # read by ralph.durations: bare numbers are minutes
MaybeDuration = int | float | str | bool  # a duration, or 0 / "off" / false for none
NoChanges = Literal["done", "fail"]


class Report(msgspec.Struct, forbid_unknown_fields=True):
    """`[report]`: write the HTML report at the end of each run."""

    write: bool = False


class GitHub(msgspec.Struct, forbid_unknown_fields=True):
    """`[github]`: close an imported issue when its task lands."""

    close_issues: bool = False


class Table(msgspec.Struct, forbid_unknown_fields=True):
    """Every key of ralph.toml with the type it must have; UNSET when the file leaves it out.
    The keys are `ralph.config.Settings`' fields (a test checks both lists agree)."""

    agent: Text | UnsetType = UNSET
    agents: dict[str, dict[str, Any]] | UnsetType = UNSET
    prompt: Text | UnsetType = UNSET
    commit_message: Text | UnsetType = UNSET
    verify: str | list[str | list[str]] | UnsetType = UNSET
    lease: Duration | UnsetType = UNSET
    max_attempts: Positive | UnsetType = UNSET
    task_timeout: MaybeDuration | UnsetType = UNSET
    idle_timeout: MaybeDuration | UnsetType = UNSET
    grace: Duration | UnsetType = UNSET
    kill_grace: Duration | UnsetType = UNSET
    backoff: Duration | UnsetType = UNSET
    backoff_max: Duration | UnsetType = UNSET
    rate_limit_pause: Duration | UnsetType = UNSET
    breaker: Positive | UnsetType = UNSET
    max_expiries: Positive | UnsetType = UNSET
    max_conflicts: Positive | UnsetType = UNSET
    merge_lock_timeout: Duration | UnsetType = UNSET
    no_changes: NoChanges | UnsetType = UNSET
    capabilities: str | list[str] | UnsetType = UNSET
    worker: Text | UnsetType = UNSET
    remote: Text | UnsetType = UNSET
    poll: Duration | UnsetType = UNSET
    progress: Text | bool | UnsetType = UNSET
    progress_entries: Count | UnsetType = UNSET
    prd: Text | UnsetType = UNSET
    max_discovered: Count | UnsetType = UNSET
    vars: dict[str, Any] | UnsetType = UNSET
    prices: Any = UNSET  # ralph.pricing.parse_overrides
    notify: Any = UNSET  # ralph.notify.parse_notify
    report: Report | UnsetType = UNSET
    github: GitHub | UnsetType = UNSET
    merge: Any = UNSET  # ralph.config.parse_merge
    run: Any = UNSET  # ralph.fallback.parse_run
    land: Any = UNSET  # ralph.review.parse_land
    sandbox: Any = UNSET  # ralph.sandbox.policy.parse

    def given(self) -> dict[str, Any]:
        """The keys the file sets, in declaration order."""
        found = ((k, getattr(self, k)) for k in self.__struct_fields__)
        return {k: v for k, v in found if v is not UNSET}


# What a key must be, for the message when its value is not.
EXPECTED = {
    **dict.fromkeys(
        ("max_attempts", "breaker", "max_expiries", "max_conflicts"), "a whole number >= 1"
    ),
    **dict.fromkeys(("progress_entries", "max_discovered"), "a whole number >= 0"),
    **dict.fromkeys(
        ("agent", "prompt", "commit_message", "worker", "remote", "prd"), "a non-empty string"
    ),
    "no_changes": "one of 'done', 'fail'",
    "capabilities": "a list of strings",
    "verify": "a command string or a list of them",
    "progress": "a path relative to the project, or false",
    "vars": "a table",
    "agents": "a table of [agents.NAME] tables",
    "report": "a table with `write = true|false`",
    "github": "a table with `close_issues = true|false`",
}

_AT = re.compile(r" - at `\$\.(\w+)(.*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`$")  # at the top level


def check(table: dict[str, Any], source: str) -> Table:
    """The raw table as a Table; a value of the wrong type is a ConfigError naming the key."""
    try:
        return msgspec.convert(table, Table)
    except msgspec.ValidationError as exc:
        raise _error(str(exc), table, source) from None


def _error(text: str, table: dict[str, Any], source: str) -> ConfigError:
    """msgspec's message (`Expected int >= 1 - at $.breaker`) as ralph's, which names the file,
    the key and what the key takes."""
    unknown = _UNKNOWN.match(text)
    if unknown:
        known = ", ".join(sorted(Table.__struct_fields__))
        return ConfigError(
            f"{source}: unknown key {unknown.group(1)!r}", hint="known keys: " + known
        )
    at = _AT.search(text)
    key, rest = (at.group(1), at.group(2)) if at else ("", "")
    value = table.get(key)
    if key in DURATIONS:
        try:
            parse_duration(value, what=key)  # says what is wrong with it, as a flag's would
        except UsageError as exc:
            return ConfigError(f"{source}: {exc.message}", hint=exc.hint)
    if key == "agents" and rest and isinstance(value, dict):
        name = next((n for n, spec in value.items() if not isinstance(spec, dict)), "?")
        return ConfigError(f"{source}: agents.{name} must be a table")
    if key == "verify" and rest.startswith("[") and isinstance(value, list):
        item = value[int(rest[1 : rest.index("]")])]
        return ConfigError(f"{source}: verify must be a list of strings, got {item!r}")
    if key == "report" and rest == ".write":
        return ConfigError(f"{source}: report.write must be true or false")
    if key == "github" and rest == ".close_issues":
        return ConfigError(f"{source}: github.close_issues must be true or false")
    if key in EXPECTED:
        return ConfigError(f"{source}: {key} must be {EXPECTED[key]}, got {value!r}")
    return ConfigError(f"{source}: {key or 'the table'}: {text}")
