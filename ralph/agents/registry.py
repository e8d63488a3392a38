"""Agent adapters by name: the built-ins and any installed under the `ralph.agents` entry points.

A third-party package adds an agent with an Agent subclass and, in its pyproject.toml::

    [project.entry-points."ralph.agents"]
    myagent = "mypkg.agent:MyAgent"

Built-ins go through the same `register()`; plugins load the first time a name is looked up.
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from ralph.agents.base import Agent
from ralph.errors import ConfigError

ENTRY_POINT_GROUP = "ralph.agents"
BUILTIN_MODULES = ("claude", "codex", "gemini", "aider", "opencode", "amp", "cursor", "command")
BUILTIN_MODULES += ("qwen", "copilot")
BUILTIN_MODULES += ("demo",)  # ralph's offline demo agent: ralph run --agent demo
SETTINGS = ("command", "args", "model", "prompt_mode", "env")
SETTINGS += ("max_cost",)  # read by the run (ralph.fallback), not by the adapter
PROMPT_MODES = ("stdin", "arg", "file")

A = TypeVar("A", bound=type[Agent])
_agents: dict[str, type[Agent]] = {}
_loaded = False


def register(cls: A) -> A:
    """Make an Agent subclass available under its `name` (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Agent)) or not cls.name:
        raise ConfigError(
            f"cannot register {cls!r} as an agent: it needs to subclass Agent and set `name`"
        )
    _agents[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(f"ralph.agents.{module}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the built-ins down with it
            raise ConfigError(
                f"agent plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                hint="reinstall or uninstall the package that provides it",
            ) from exc
        if isinstance(obj, type) and issubclass(obj, Agent):
            if not obj.name:
                obj.name = ep.name
            register(obj)
        elif callable(obj):
            obj(register)  # a hook that registers one or more agents itself


def known_agents() -> list[str]:
    """Names `get_agent` accepts, sorted."""
    _load()
    return sorted(_agents)


def cost_is_estimated(name: str) -> bool:
    """True when the agent's CLI reports tokens only, so ralph estimates its cost from prices."""
    _load()
    cls = _agents.get(name)
    return cls is not None and cls.cost_source == "estimated"


def get_agent(name: str, settings: Mapping[str, Any] | None = None) -> Agent:
    """The adapter `name`, configured from its `[agents.<name>]` table in ralph.toml."""
    _load()
    cls = _agents.get(name)
    if cls is None:
        raise ConfigError(
            f"unknown agent {name!r}", hint="known agents: " + ", ".join(sorted(_agents))
        )
    return cls(**_options(name, dict(settings or {})))


def configured_agent(name: str, settings: Mapping[str, Any] | None = None) -> Agent:
    """`get_agent`, except that a name the registry does not know whose `[agents.<name>]`
    table gives a `command` runs as that command (the `command` adapter, under that name)."""
    if name not in known_agents() and (settings or {}).get("command"):
        agent = get_agent("command", settings)
        agent.name = name  # type: ignore[misc]
        return agent
    return get_agent(name, settings)


def plugin_agents() -> list[str]:
    """Names of the agents installed under the `ralph.agents` entry points, sorted."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def _options(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Validate an `[agents.<name>]` table into Agent keyword arguments."""
    where = f"[agents.{name}]"
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting {', '.join(map(repr, unknown))}",
            hint="allowed: " + ", ".join(SETTINGS),
        )
    options: dict[str, Any] = {}
    if "max_cost" in settings:
        from ralph.fallback import max_cost_of

        max_cost_of(settings, name)  # validated here, used by the run's agent pool
    if "command" in settings:
        options["command"] = _argv(settings["command"], f"{where} command")
        if not options["command"]:
            raise ConfigError(f"{where} command is empty", hint='e.g. command = ["my-agent"]')
    if "args" in settings:
        options["args"] = _argv(settings["args"], f"{where} args")
    if settings.get("model") is not None:
        if not isinstance(settings["model"], str) or not settings["model"]:
            raise ConfigError(f"{where} model must be a non-empty string")
        options["model"] = settings["model"]
    if settings.get("prompt_mode") is not None:
        if settings["prompt_mode"] not in PROMPT_MODES:
            raise ConfigError(
                f"{where} prompt_mode {settings['prompt_mode']!r} is not valid",
                hint="use one of: " + ", ".join(PROMPT_MODES),
            )
        options["prompt_mode"] = settings["prompt_mode"]
    if settings.get("env") is not None:
        env = settings["env"]
        if not isinstance(env, Mapping) or not all(isinstance(k, str) for k in env):
            raise ConfigError(f'{where} env must be a table of NAME = "value"')
        options["env"] = {k: str(v) for k, v in env.items()}
    return options


def _argv(value: Any, what: str) -> list[str]:
    """A list of strings, or a string split like a shell would (no shell is ever run)."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ConfigError(f"{what}: {exc}", hint="check the quotes") from exc
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{what} must be a string or a list of strings")
