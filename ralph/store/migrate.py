"""Schema versions: what a store has, what this ralph needs, and the messages when they differ.

The rule (README, "Upgrading"): opening a store with an older schema upgrades it in place, once,
in one transaction, under the store's write lock (SQLite) or an advisory lock (PostgreSQL);
a SQLite store is first copied to `<db>.<old ralph version>.bak`. Processes that arrive
meanwhile wait for the lock, then find the store current. An opening that may not write
(`upgrade=False`: `ralph db status`, read-only views) never upgrades and says what to run.
A store whose schema is newer than this ralph's is refused before anything is written.

Migrations only add (columns with defaults, tables, indexes), so a process of the previous
release that is already running keeps working on the upgraded store; a migration that would
break the previous release's queries needs a release note saying to stop every worker first.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from ralph import errors
from ralph.store import queries

VERSION_KEY = "schema_version"  # read by every ralph since 0.1.0: never rename it
RALPH_KEY = "ralph_version"  # the ralph that created the store or last upgraded its schema
UPGRADE_EVENT = "schema_upgraded"
# Stores made before ralph recorded its version in `meta`: the release that made each schema.
_RELEASE_OF_SCHEMA = {1: "0.1.0"}


def ralph_version() -> str:
    from ralph.version import __version__

    return __version__


def latest(backend: str) -> int:
    """The schema version this ralph writes."""
    return queries.schema(backend)[-1][0]


def steps(backend: str, after: int) -> list[tuple[int, str]]:
    """The migrations that take a store from schema `after` to the latest, in order."""
    return [(version, sql) for version, sql in queries.schema(backend) if version > after]


@dataclass
class SchemaState:
    """A store's schema as found when it was opened (and what opening it did)."""

    url: str
    backend: str
    version: int  # 0: no store yet (missing file, empty database)
    latest: int
    ralph: str | None = None  # the ralph that made this schema, when known
    upgraded_from: int | None = None  # set when this opening upgraded (or created) the store
    backup: str | None = None  # the copy kept before that upgrade (SQLite)

    @property
    def pending(self) -> list[int]:
        """The migrations an upgrade would run (all of them for a store not made yet)."""
        return [v for v, _ in steps(self.backend, self.version)]

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def made_by(self) -> str | None:
        """The ralph release that made this schema, when known."""
        return self.ralph or _RELEASE_OF_SCHEMA.get(self.version)

    def label(self) -> str:
        """The old release's name for a backup file: `0.1.0`, else `schema3`."""
        return self.made_by or f"schema{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "backend": self.backend,
            "schema": self.version,
            "latest": self.latest,
            "pending": self.pending,
            "made_by": self.made_by,
            "ralph": ralph_version(),
            "upgraded_from": self.upgraded_from,
            "backup": self.backup,
        }


def refuse_newer(state: SchemaState) -> None:
    """Raise when the store's schema is newer than this ralph's; called before any write."""
    if state.version <= state.latest:
        return
    made_by = f" (ralph {state.ralph})" if state.ralph else ""
    need = f"ralph {state.ralph} or later" if state.ralph else "a newer ralph"
    raise errors.StoreError(
        f"{state.url} has schema {state.version}{made_by}, newer than this ralph "
        f"{ralph_version()} (schema {state.latest}); nothing was changed",
        hint=f"install {need} on this host",
        schema=state,
    )


def too_old(state: SchemaState) -> errors.StoreError:
    """The error of an opening that may not upgrade an older (or missing) store."""
    if not state.exists:
        return errors.StoreError(
            f"no ralph store at {state.url} yet",
            hint="any ralph command that writes creates it, or run `ralph db upgrade`",
            schema=state,
        )
    return errors.StoreError(
        f"{state.url} has schema {state.version}, older than this ralph {ralph_version()}'s "
        f"schema {state.latest}; this opening may not upgrade it",
        hint="run `ralph db upgrade` (with the same --db or RALPH_DB)",
        schema=state,
    )


def sqlite_statements(script: str) -> list[str]:
    """A migration script as single statements (SQLite runs one per execute)."""
    found, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            body = "\n".join(
                ln for ln in pending.splitlines() if not ln.lstrip().startswith("--")
            ).strip()
            if body.rstrip(";").strip():
                found.append(body)
            pending = ""
    if pending.strip() and any(
        not ln.lstrip().startswith("--") and ln.strip() for ln in pending.splitlines()
    ):
        raise ValueError(f"unterminated statement in migration: {pending.strip()[:60]!r}")
    return found
