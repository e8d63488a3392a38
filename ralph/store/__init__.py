"""Open a task store from a path or URL: SQLite by default, PostgreSQL for postgresql:// URLs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ralph import errors
from ralph.store.base import SQLStore
from ralph.store.migrate import SchemaState

Store = SQLStore

DB_ENV = "RALPH_DB"
DEFAULT_DIR = ".ralph"
DEFAULT_NAME = "ralph.db"


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` holding `.ralph/` or `.git` (else `start`)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_DIR).is_dir() or (folder / ".git").exists():
            return folder
    return here


def ensure_ralph_dir(root: Path) -> Path:
    """Create `.ralph/` with a `.gitignore` of `*`, so it stays out of git untouched."""
    folder = root / DEFAULT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return folder


def resolve_url(url: str | os.PathLike[str] | None = None) -> str:
    """Where the store lives: the argument, else RALPH_DB, else `.ralph/ralph.db` at the root."""
    if url is None or str(url) == "":
        url = os.environ.get(DB_ENV) or None
    if url is None:
        return str(project_root() / DEFAULT_DIR / DEFAULT_NAME)
    return str(url)


def sqlite_path(url: str | os.PathLike[str] | None = None) -> Path | None:
    """The SQLite file a path or sqlite:/// URL names; None for a PostgreSQL URL."""
    target = resolve_url(url)
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    if scheme in ("postgresql", "postgres"):
        return None
    if scheme == "sqlite":
        target = target.split("://", 1)[1]
        if target.startswith("/") and target[1:2] == "/":
            target = target[1:]
    elif scheme:
        raise errors.StoreError(
            f"unsupported database URL scheme {scheme + '://'!r}",
            hint="use a file path, sqlite:///path or postgresql://user@host/db",
        )
    return Path(target).expanduser()


def agent_db(store: SQLStore) -> str:
    """RALPH_DB for an agent the loop launches: a store URL that works from any folder.

    SQLite: the file's absolute path (an agent runs in a worktree, where a relative path
    named a new, empty store). PostgreSQL: the URL with its password, because the agent's
    own `ralph` must connect; it goes only into the agent's environment, never into output.
    """
    path = getattr(store, "path", None)
    if path is not None:
        return str(Path(path).resolve())
    connect = getattr(store, "connect_url", None)
    return connect() if connect is not None else str(getattr(store, "url", ""))


def open_store(
    url: str | os.PathLike[str] | None = None,
    *,
    clock: Callable[[], float] = time.time,
    upgrade: bool = True,
    create: bool = True,
) -> SQLStore:
    """Open the store at a path, a sqlite:/// or a postgresql:// URL.

    With `upgrade` (the default) a missing store is created and an older schema is upgraded
    in place (ralph/store/migrate.py); without it nothing is written, and a missing or older
    store raises StoreError saying to run `ralph db upgrade`. A newer schema always raises.
    `store.schema` tells what was found and done. Without `create` (read commands) a SQLite
    file that does not exist, or a PostgreSQL database without ralph's schema, raises
    NoStoreError instead of being created.
    """
    return _open(url, clock=clock, upgrade=upgrade, create=create)


def schema_status(url: str | os.PathLike[str] | None = None) -> SchemaState:
    """The schema state of the store at `url` (missing, older, current or newer), read only."""
    store = _open(url, clock=time.time, upgrade=False, inspect=True)
    try:
        return store.schema
    finally:
        store.close()


def _open(
    url: str | os.PathLike[str] | None,
    *,
    clock: Callable[[], float],
    upgrade: bool,
    inspect: bool = False,
    create: bool = True,
) -> SQLStore:
    target = resolve_url(url)
    path = sqlite_path(target)
    if path is None:
        from ralph.store.postgres import PostgresStore

        return PostgresStore(target, clock=clock, upgrade=upgrade, inspect=inspect, create=create)
    if not create and not inspect and not path.exists():
        raise errors.NoStoreError(str(path))
    if (
        upgrade
        and path.name == DEFAULT_NAME
        and path.parent.name == DEFAULT_DIR
        and not path.exists()
    ):
        ensure_ralph_dir(path.parent.parent)
    from ralph.store.sqlite import SQLiteStore

    return SQLiteStore(path, clock=clock, upgrade=upgrade, inspect=inspect)
