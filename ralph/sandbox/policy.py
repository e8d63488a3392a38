"""The sandbox settings: the `[sandbox]` table of ralph.toml, the flags and `RALPH_SANDBOX`.

The sandbox is on by default wherever it works. `--sandbox` / `--no-sandbox` (or
`RALPH_SANDBOX=on|off`) override the table's `enabled`; the flag wins over the variable, the
variable over the file. Where it cannot run, an explicit or default "on" refuses the run with
SandboxUnavailableError rather than running agents unconfined behind the user's back.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ralph.errors import ConfigError

NETWORKS = ("allow", "none", "open")
ENV_VAR = "RALPH_SANDBOX"
_ON = ("on", "1", "true", "yes")
_OFF = ("off", "0", "false", "no")


@dataclass
class SandboxSettings:
    """What `[sandbox]` says; `enabled=None` means "the default" (on where it works)."""

    enabled: bool | None = None
    network: str = "allow"
    allow: list[str] = field(default_factory=list)  # host or host:port (443 when no port)
    writable: list[str] = field(default_factory=list)
    readable: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)  # variable names passed through as they are


def parse(table: Any, source: str) -> SandboxSettings:
    """Validate a raw `[sandbox]` table; errors name the file and the key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: sandbox must be a table ([sandbox])")
    out = SandboxSettings()
    for key, value in table.items():
        where = f"{source}: sandbox.{key}"
        if key == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
            out.enabled = value
        elif key == "network":
            if value not in NETWORKS:
                raise ConfigError(f"{where} must be one of {', '.join(map(repr, NETWORKS))}")
            out.network = value
        elif key in ("allow", "writable", "readable", "env"):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"{where} must be a list of strings, got {value!r}")
            setattr(out, key, list(value))
        else:
            raise ConfigError(
                f"{source}: unknown key sandbox.{key}",
                hint="known keys: allow, enabled, env, network, readable, writable",
            )
    return out


def wanted(flag: bool | None, settings: SandboxSettings) -> tuple[bool, bool]:
    """(on?, asked for explicitly?) from the flag, then `RALPH_SANDBOX`, then the file."""
    if flag is not None:
        return flag, True
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in _ON:
        return True, True
    if value in _OFF:
        return False, True
    if settings.enabled is not None:
        return settings.enabled, True
    return True, False


def host_port(entry: str, default_port: int = 443) -> str:
    """'api.example.com' -> 'api.example.com:443'; '127.0.0.1:8080' stays; '[::1]:80' stays."""
    entry = entry.strip()
    if entry.startswith("["):
        return entry if "]:" in entry else f"{entry}:{default_port}"
    if entry.count(":") == 1:
        return entry
    return f"{entry}:{default_port}"


def url_host_port(url: str) -> str | None:
    """host:port of a base URL ('http://127.0.0.1:9000/v1' -> '127.0.0.1:9000'), or None."""

    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    port = port or (80 if parts.scheme == "http" else 443)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Where ralph reads its own settings from a repository's files; an agent may edit these like any
# file, but a change to how its own sandbox is set never lands (it would take effect next run).
SETTINGS_FILES = {"ralph.toml": (), "pyproject.toml": ("tool", "ralph")}


def sandbox_table(text: bytes | None, keys: tuple[str, ...]) -> Any:
    """The `[sandbox]` table a settings file holds (None if none, or unreadable TOML)."""

    if text is None:
        return None
    try:
        table: Any = tomllib.loads(text.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError:
        return None
    for key in keys:
        table = table.get(key) if isinstance(table, dict) else None
    return table.get("sandbox") if isinstance(table, dict) else None


def sandbox_edited(read: Any, base: str, tree: str, paths: list[str]) -> str | None:
    """A note when the result changes a `[sandbox]` table (`read(rev, path)` gives a blob's
    bytes, or None): only the user may loosen or tighten the agent's own confinement."""
    for path, keys in SETTINGS_FILES.items():
        if path in paths and sandbox_table(read(base, path), keys) != sandbox_table(
            read(tree, path), keys
        ):
            return (
                f"the agent changed the [sandbox] settings in {path}; ralph never lands an "
                "agent's change to its own confinement (make it yourself and commit it)"
            )
    return None
