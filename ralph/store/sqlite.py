"""SQLite backend: WAL, a busy timeout, and BEGIN IMMEDIATE for every transaction that writes.

A plain BEGIN that reads first and writes later gets SQLITE_BUSY at once whatever the timeout,
because SQLite cannot upgrade a read snapshot that another writer has moved past; IMMEDIATE takes
the write lock up front and waits for it under busy_timeout instead.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ralph import errors
from ralph.store import queries
from ralph.store.base import Row, SQLStore

BUSY_TIMEOUT_MS = 60_000


class _SQLiteTx:
    def __init__(self, conn: sqlite3.Connection, sql: Mapping[str, str], now: float):
        self.conn = conn
        self.sql = sql
        self.now = now

    def one(self, name: str, /, **params: Any) -> Row | None:
        return self.conn.execute(self.sql[name], params).fetchone()

    def all(self, name: str, /, **params: Any) -> list[Row]:
        return self.conn.execute(self.sql[name], params).fetchall()

    def run(self, name: str, /, **params: Any) -> int:
        return self.conn.execute(self.sql[name], params).rowcount

    def many(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.executemany(self.sql[name], rows)


class SQLiteStore(SQLStore):
    """The default store: one SQLite file (`.ralph/ralph.db`), one connection per thread."""

    backend = "sqlite"

    def __init__(
        self, path: str | Path, *, clock: Callable[[], float] = time.time, create: bool = True
    ):
        self.path = Path(path)
        self.clock = clock
        self._sql = queries.load("sqlite.sql")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise errors.StoreError(
                f"{self.path} is a directory, not a database file",
                hint="pass a file path with --db or RALPH_DB",
            )
        if not self.path.exists():
            if not create:
                raise errors.StoreError(f"no database at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    @property
    def url(self) -> str:
        return str(self.path)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    check_same_thread=False,
                )
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from exc
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def _unusable(self, exc: sqlite3.Error) -> errors.StoreError:
        if "not a database" in str(exc) or "file is encrypted" in str(exc):
            return errors.StoreError(
                f"{self.path} is not a SQLite database",
                hint="point --db or RALPH_DB at a ralph database file",
            )
        return errors.StoreError(f"cannot use {self.path}: {exc}")

    def _migrate(self) -> None:
        conn = self._conn()
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from exc
        if tables and "meta" not in tables:
            raise errors.StoreError(
                f"{self.path} is a SQLite database but not ralph's",
                hint="point --db or RALPH_DB at a ralph database file",
            )
        migrations = queries.schema("sqlite")
        latest = migrations[-1][0]
        if tables and self._version(conn) == latest:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            current = self._version(conn)
            if current > latest:
                raise errors.StoreError(
                    f"{self.path} has schema version {current}, newer than this ralph ({latest})",
                    hint="upgrade ralph",
                )
            for version, sql in migrations:
                if version > current:
                    for statement in sql.split(";\n"):
                        if statement.strip():
                            conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(latest),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[_SQLiteTx]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise errors.StoreError(f"cannot lock {self.path}: {exc}") from exc
        try:
            yield _SQLiteTx(conn, self._sql, self.clock())
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.execute("ROLLBACK")
            raise errors.StoreError(f"cannot commit to {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()
