"""SQLite backend: WAL, a busy timeout, and BEGIN IMMEDIATE for every transaction that writes.

A plain BEGIN that reads first and writes later gets SQLITE_BUSY at once whatever the timeout,
because SQLite cannot upgrade a read snapshot that another writer has moved past; IMMEDIATE takes
the write lock up front and waits for it under busy_timeout instead.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ralph import errors
from ralph.store import migrate, queries
from ralph.store.base import Row, SQLStore

BUSY_TIMEOUT_MS = 60_000
# Schema plumbing, not domain queries (those live in sqlite.sql).
_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
_META_CREATE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)"
_META_READ = "SELECT key, value FROM meta"
_META_PUT = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
_EVENT = "INSERT INTO events (at, kind, data) VALUES (?, ?, ?)"


def _busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes included."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


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
    """The default store: one SQLite file (`.ralph/ralph.db`), one connection per thread.

    Opening sets the schema up (see ralph/store/migrate.py for the rule): `upgrade=False`
    writes nothing and refuses an older or missing store; `inspect=True` only reads the
    schema state into `self.schema` (for `ralph db status`), creating no file.
    """

    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        create: bool = True,
        upgrade: bool = True,
        inspect: bool = False,
    ):
        self.path = Path(path)
        self.clock = clock
        self._sql = queries.for_dialect("sqlite")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise errors.StoreError(
                f"{self.path} is a directory, not a database file",
                hint="pass a file path with --db or RALPH_DB",
            )
        if not self.path.exists():
            missing = migrate.SchemaState(self.url, self.backend, 0, migrate.latest(self.backend))
            if inspect:
                self.schema = missing
                return
            if not create:
                raise errors.StoreError(f"no database at {self.path}")
            if not upgrade:
                raise migrate.too_old(missing)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = self._open_schema(upgrade=upgrade and not inspect, inspect=inspect)

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
                # Neither takes a lock. The journal mode (WAL) is kept in the file: it is set
                # once, when the schema is set up, not by every connection.
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
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
        if "malformed" in str(exc):
            from ralph.store.backupnames import restore_hint

            return errors.StoreError(f"cannot use {self.path}: {exc}", hint=restore_hint(self.path))
        return errors.StoreError(f"cannot use {self.path}: {exc}")

    # -- schema ------------------------------------------------------------------------------
    def _open_schema(self, *, upgrade: bool, inspect: bool) -> migrate.SchemaState:
        """Set the schema up, waiting (like any write) while another process holds the lock.

        Some lock requests get SQLITE_BUSY at once, whatever busy_timeout says: switching to
        WAL (it reads the header, then needs an exclusive lock) and a read that meets another
        connection's WAL switch or recovery. Four `ralph worker start` on a missing store lost
        that race in 2 of 20 rounds. Such an answer starts the whole setup again after a short
        random sleep, until the busy timeout has passed.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.002
        while True:
            try:
                return self._setup(upgrade=upgrade, inspect=inspect)
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise self._unusable(exc) from exc
            except sqlite3.DatabaseError as exc:
                raise self._unusable(exc) from exc
            time.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, 0.1)

    def _setup(self, *, upgrade: bool, inspect: bool) -> migrate.SchemaState:
        conn = self._conn()
        state = self._state(conn)
        if inspect:
            return state
        migrate.refuse_newer(state)  # before anything is written, the journal mode included
        if state.version == state.latest:
            if upgrade:
                self._use_wal(conn)
            return state
        if not upgrade:
            raise migrate.too_old(state)
        self._use_wal(conn)  # outside the transaction: SQLite cannot switch inside one
        conn.execute("BEGIN IMMEDIATE")  # the write lock: a concurrent upgrader waits here
        try:
            state = self._state(conn)  # as left by whoever held the lock before us
            migrate.refuse_newer(state)
            if state.version < state.latest:
                state = self._upgrade(conn, state)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return state

    def _state(self, conn: sqlite3.Connection) -> migrate.SchemaState:
        tables = {r[0] for r in conn.execute(_TABLES)}
        if tables and "meta" not in tables:
            raise errors.StoreError(
                f"{self.path} is a SQLite database but not ralph's",
                hint="point --db or RALPH_DB at a ralph database file",
            )
        meta = dict(conn.execute(_META_READ).fetchall()) if tables else {}
        return migrate.SchemaState(
            self.url,
            self.backend,
            int(meta.get(migrate.VERSION_KEY, 0)),
            migrate.latest(self.backend),
            ralph=meta.get(migrate.RALPH_KEY),
        )

    @staticmethod
    def _use_wal(conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")

    def _upgrade(self, conn: sqlite3.Connection, state: migrate.SchemaState) -> migrate.SchemaState:
        """Run the pending migrations in the caller's write transaction; keep a copy first."""
        backup = self._backup(state) if state.exists else None
        conn.execute(_META_CREATE)
        for _, script in migrate.steps(self.backend, state.version):
            for statement in migrate.sqlite_statements(script):
                conn.execute(statement)
        ralph = migrate.ralph_version()
        conn.execute(_META_PUT, (migrate.VERSION_KEY, str(state.latest)))
        conn.execute(_META_PUT, (migrate.RALPH_KEY, ralph))
        if state.exists:
            data = {"from": state.version, "to": state.latest, "ralph": ralph, "backup": backup}
            conn.execute(_EVENT, (self.clock(), migrate.UPGRADE_EVENT, json.dumps(data)))
        return migrate.SchemaState(
            self.url,
            self.backend,
            state.latest,
            state.latest,
            ralph=ralph,
            upgraded_from=state.version,
            backup=backup,
        )

    def _backup(self, state: migrate.SchemaState) -> str:
        """Copy the store to `<db>.<old release>.bak` while the caller holds the write lock.

        The copy is read through a second connection: WAL readers are not blocked by the
        lock, and nobody else can commit until the upgrade does.
        """
        target = self.path.with_name(f"{self.path.name}.{state.label()}.bak")
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        source = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        os.replace(partial, target)
        return str(target)

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[_SQLiteTx]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise errors.StoreError(f"cannot lock {self.path}: {exc}") from exc
        try:
            yield _SQLiteTx(conn, self._sql, self.clock())
        except BaseException as exc:
            # SQLite rolls a transaction back by itself on some errors (a full disk, an I/O
            # error): a ROLLBACK then fails with "no transaction is active" and hides them.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
                raise errors.StoreError(f"cannot write to {self.path}: {exc}") from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise errors.StoreError(f"cannot commit to {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()
