"""Project settings for `ralph run`: `ralph.toml`, else `[tool.ralph]` in pyproject.toml, with
an untracked `ralph.local.toml` (secrets, this machine's choices) read over either.

Every key is optional; an unknown key or a value of the wrong type is a ConfigError naming the
file and the key, raised before anything runs. Bare numbers in durations are minutes (as in tx).
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ralph.durations import DURATIONS, OPTIONAL_DURATIONS, parse_duration
from ralph.errors import ConfigError, UsageError
from ralph.fallback import RunSettings, parse_run
from ralph.pricing import parse_overrides
from ralph.review import LandSettings, parse_land
from ralph.sandbox.policy import SandboxSettings
from ralph.sandbox.policy import parse as parse_sandbox

PROMPT_MODES = ("stdin", "arg", "file")
NO_CHANGES = ("done", "fail")
RESOLVE_MODES = ("agent", "rerun")


@dataclass
class MergeSettings:
    """`[merge]`: what a landing that conflicts does (ralph.resolve). "agent": a fresh agent
    resolves the conflict in the task's workspace first; "rerun": the task runs again."""

    resolve: str = "agent"
    agent: str | None = None  # another configured agent for resolutions; None: the task's own
    prompt: str | None = None  # the resolution template [default: prompts/resolve.md.j2]


def parse_merge(value: Any, source: str) -> MergeSettings:
    """The `[merge]` table; errors name the file and the key."""
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: merge must be a table ([merge])")
    unknown = set(value) - set(MergeSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key merge.{sorted(unknown)[0]}",
            hint="known: resolve, agent, prompt",
        )
    found = MergeSettings()
    if "resolve" in value:
        if value["resolve"] not in RESOLVE_MODES:
            raise ConfigError(f"{source}: merge.resolve must be 'agent' or 'rerun'")
        found.resolve = value["resolve"]
    for key in ("agent", "prompt"):
        if key in value:
            if not isinstance(value[key], str) or not value[key].strip():
                raise ConfigError(f"{source}: merge.{key} must be a non-empty string")
            setattr(found, key, value[key])
    return found


@dataclass
class Settings:
    """Everything `ralph run` reads from the config file, with the defaults it uses otherwise."""

    agent: str = "claude"
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompt: str | None = None
    commit_message: str | None = None
    verify: list[list[str]] = field(default_factory=list)
    lease: float = 30 * 60.0
    max_attempts: int = 3
    task_timeout: float | None = 60 * 60.0
    idle_timeout: float | None = 15 * 60.0
    grace: float = 30.0
    kill_grace: float = 5.0
    backoff: float = 30.0
    backoff_max: float = 30 * 60.0
    rate_limit_pause: float = 60.0
    breaker: int = 5
    max_expiries: int = 3  # the poison pill: claims lost this often fail the task
    max_conflicts: int = 10  # merge conflicts a task may hit before it fails
    merge_lock_timeout: float = 15 * 60.0  # then the landing is one failed attempt of its task
    no_changes: str = "done"
    capabilities: list[str] = field(default_factory=list)
    worker: str | None = None
    remote: str | None = (
        None  # git remote every host pushes task commits to (ralph/workspace/remote.py)
    )
    poll: float = 2.0
    progress: str | None = "progress.md"  # the RALPH memory (ralph.memory); false: off
    progress_entries: int = 5
    prd: str | None = None  # a prd.json whose stories' passes ralph sets (ralph.prd)
    max_discovered: int = 5  # follow-up tasks an agent may file per task (--discovered-from)
    vars: dict[str, Any] = field(default_factory=dict)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # see ralph.pricing
    notify: dict[str, Any] = field(default_factory=dict)  # [notify], see ralph.notify
    report: dict[str, Any] = field(default_factory=dict)  # [report] write = true: ralph.ops.report
    github: dict[str, Any] = field(default_factory=dict)  # [github] close_issues = true
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)  # ralph.sandbox.policy
    merge: MergeSettings = field(default_factory=MergeSettings)  # [merge], ralph.resolve
    run: RunSettings = field(default_factory=RunSettings)  # [run] agents, fallback_after
    land: LandSettings = field(default_factory=LandSettings)  # [land] mode: ralph.review
    source: str | None = None

    def agent_settings(self, name: str) -> dict[str, Any]:
        """The raw `[agents.NAME]` table; the agent registry validates it."""
        return dict(self.agents.get(name, {}))


def find_config(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The raw table of `ralph.toml` or pyproject's `[tool.ralph]` under `root`, if any."""
    for path, pick in (
        (root / "ralph.toml", lambda d: d),
        (root / "pyproject.toml", lambda d: d.get("tool", {}).get("ralph")),
    ):
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
            table = pick(data)
            if table is not None:
                return path, table
    return None


def load_settings(root: Path, path: Path | None = None) -> Settings:
    """Settings from `path` (a ralph.toml-shaped file), or found under `root`, or defaults."""
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            found: tuple[Path, dict[str, Any]] | None = (path, tomllib.loads(path.read_text()))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        if path.name == "pyproject.toml":
            found = (path, found[1].get("tool", {}).get("ralph", {}))
    else:
        found = find_config(root)
    local = _local_config(root)
    if local is not None:
        if found is None:
            found = local
        else:
            found = (found[0], _merged(found[1], local[1]))
            return parse_settings(found[1], source=f"{found[0]} + {LOCAL_NAME}")
    if found is None:
        return Settings()
    return parse_settings(found[1], source=str(found[0]))


LOCAL_NAME = "ralph.local.toml"


def _local_config(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """`ralph.local.toml` under `root`: this machine's settings and secrets (API keys in an
    agent's env), kept out of git by `ralph init`, read over ralph.toml."""
    path = root / LOCAL_NAME
    if not path.is_file():
        return None
    try:
        return path, tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, tables merged key by key ([agents.claude] env included)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def parse_settings(table: dict[str, Any], source: str = "ralph.toml") -> Settings:
    """Validate a raw config table into Settings; errors name the file and the key.

    The types come from `ralph.configschema.Table`; what needs more than a type is read here."""
    from ralph.configschema import check  # lazy: start-up (msgspec, only with a config file)

    settings = Settings(source=source)

    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{source}: {key} must be {expected}, got {table.get(key)!r}")

    for key, value in check(table, source).given().items():
        if key in DURATIONS:
            if key in OPTIONAL_DURATIONS and value in (0, "0", "none", "off", False):
                setattr(settings, key, None)
                continue
            try:
                setattr(settings, key, parse_duration(value, what=key))
            except UsageError as exc:
                raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from exc
        elif key == "progress":
            if value is False:
                settings.progress = None
            elif isinstance(value, str) and not Path(value).is_absolute():
                settings.progress = value
            else:
                raise bad(key, "a path relative to the project, or false")
        elif key == "capabilities":
            settings.capabilities = _string_list(value, f"{source}: {key}")
        elif key == "verify":
            items = [value] if isinstance(value, str) else value
            settings.verify = [_argv(item, f"{source}: verify") for item in items]
        elif key == "prices":
            settings.prices = parse_overrides(value, source)
        elif key == "notify":
            from ralph.notify import parse_notify  # lazy: start-up (~1 ms, only with [notify])

            parse_notify(value, source)
            settings.notify = dict(value)
        elif key == "report":
            settings.report = dict(table[key])
        elif key == "github":
            settings.github = dict(table[key])
        elif key == "sandbox":
            settings.sandbox = parse_sandbox(value, source)
        elif key == "merge":
            settings.merge = parse_merge(value, source)
        elif key == "run":
            settings.run = parse_run(value, source)
        elif key == "land":
            settings.land = parse_land(value, source)
        elif key in ("vars", "agents"):
            setattr(settings, key, {k: v if key == "vars" else dict(v) for k, v in value.items()})
        else:  # whole numbers, strings and choices: the type said it all
            setattr(settings, key, value)
    return settings


def _argv(value: Any, where: str) -> list[str]:
    """A command as an argv list: a list of strings, or one string split like a shell would."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: cannot split {value!r}: {exc}") from exc
    else:
        argv = _string_list(value, where)
    if not argv:
        raise ConfigError(f"{where} must not be empty")
    return argv


def _string_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    return list(value)
