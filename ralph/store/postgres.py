"""PostgreSQL backend: the same domain logic as SQLite, for workers on many hosts.

Clock: expiry is computed and compared with the database's clock. Each transaction reads
`now()` once and every comparison in it uses that value, so workers on hosts with skewed clocks
agree. A store opened with an explicit clock (tests) uses that instead; `time.time`, the
default of `open_store`, counts as "no explicit clock".

Failures: each store method marked `@retried` (every public one; ralph/store/core.py) runs whole
again through `PostgresStore._retry` (jittered exponential backoff, up to RETRY_SECONDS) when
PostgreSQL reports something transient (`_transient`): a lost connection, a restart, a deadlock or
serialization failure, a lock or statement timeout, an idle session ended. Each retry is logged
(INFO, logger ralph.store). A retried attempt never leaves anything half-applied: its transaction
was rolled back, and a COMMIT whose answer was lost is looked up (commit_marks) before anything is
retried. A call made inside another store call is retried by the outer one only, so retries never
multiply. Other database errors: StoreError. No password is ever in `repr`, `url` or a message.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pgerrors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from ralph import errors
from ralph.store import migrate, pgconn, queries
from ralph.store.base import Row, SQLStore

log = logging.getLogger("ralph.store")
RETRY_SECONDS = 30.0
IDLE_MAX = 4  # connections kept for reuse: the loop thread, the lease renewer, some slack
LOCK_NAMESPACE = 72616  # first key of ralph's advisory locks; (LOCK_NAMESPACE, 1) guards migration
_LOCK_CLAUSE = re.compile(
    r"\s+FOR\s+(?:NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)(?:\s+OF\s+\w+(?:\s*,\s*\w+)*)?"
    r"(?:\s+SKIP\s+LOCKED|\s+NOWAIT)?",
    re.IGNORECASE,
)
# Backend plumbing, not domain queries (those live in postgres.sql). Every write transaction
# stamps its connection's row in commit_marks; when the answer to a COMMIT is lost, the row
# says whether it happened. (A transaction id cannot: after a crash the server may hand the
# same id to a new transaction.)
_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"
_MARK = (
    "INSERT INTO commit_marks (conn_id, mark, at) VALUES (%s, %s, extract(epoch FROM now())) "
    "ON CONFLICT (conn_id) DO UPDATE SET mark = excluded.mark, at = excluded.at"
)
# Write transactions run in pipeline mode: statements are sent at once and only a read of
# their rows waits for the server. These named queries' row counts are never read, so `run`
# sends them without waiting (and returns -1): they reach the server with the next statement
# whose rows are read, or with COMMIT, and any error they raise surfaces there.
_DEFERRED = frozenset(
    {
        "event_insert",
        "task_set_lease",
        "task_set_status",
        "claim_end",
        "dependents_adjust_blockers",
        "task_adjust_children",
        "task_adjust_blockers",
        "task_set_commit",
    }
)
_MARK_READ = "SELECT mark FROM commit_marks WHERE conn_id = %s FOR UPDATE"  # waits out a
_MARK_DROP = "DELETE FROM commit_marks WHERE conn_id = %s"  # COMMIT the server still runs
_MARKS_PRUNE = "DELETE FROM commit_marks WHERE at < extract(epoch FROM now()) - 86400"
_NOW = "SELECT extract(epoch FROM now())::float8 AS now"
_META_CREATE = "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL)"
_META_READ = "SELECT key, value FROM meta"
_META_PUT = (
    "INSERT INTO meta (key, value) VALUES (%s, %s) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_EVENT = "INSERT INTO events (at, kind, data) VALUES (extract(epoch FROM now()), %s, %s)"
_STARTING = ("is starting up", "is shutting down", "in recovery mode", "not yet accepting")


def redact(url: str) -> str:
    """The URL with its password (in the user part or a `password=` parameter) shown as ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        userinfo, at, hostport = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
        query = urlencode(
            [
                (k, "***" if k.lower() == "password" else v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return re.sub(r"(://[^:/?#@]*):[^/?#]*@", r"\1:***@", url.split("?", 1)[0])


def _secrets(url: str) -> list[str]:
    """Every spelling of the URL's password, to scrub from messages written by libpq.

    Found with patterns rather than a URL parser, so a malformed URL (which libpq may quote
    whole in its message) is scrubbed too.
    """
    found = re.findall(r"[?&]password=([^&#]*)", url, re.IGNORECASE)
    userinfo = re.match(r"[A-Za-z][\w+.-]*://([^/?#]*)@", url)
    if userinfo and ":" in userinfo.group(1):
        found.append(userinfo.group(1).split(":", 1)[1])
    return sorted({s for raw in found for s in (raw, unquote(raw)) if s}, key=len, reverse=True)


def _statements(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*\n", "\n".join(lines)) if s.strip()]


@functools.cache
def _query_sets() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The PostgreSQL queries (common.sql translated, and postgres.sql) as (write, read) maps
    of name -> statements; reads drop their FOR clauses."""
    write = {name: _statements(sql) for name, sql in queries.for_dialect("postgres").items()}
    read = {name: [_LOCK_CLAUSE.sub("", s) for s in stmts] for name, stmts in write.items()}
    return write, read


# SQLSTATEs after which the same operation, run again, can succeed: the server, or a timeout
# set on it, ended the attempt rather than anything in the request.
_RETRIABLE = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available: waited past lock_timeout
        "57014",  # query_canceled: ran past statement_timeout (or a pg_cancel_backend)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now: starting up or in recovery
        "57P05",  # idle_session_timeout: a kept connection was closed by the server
        "25P03",  # idle_in_transaction_session_timeout: the session is gone, reconnect
        "53300",  # too_many_connections: many workers starting at once
    }
)


def _transient(exc: BaseException) -> bool:
    """Worth running the whole operation again: the database, not the request, was the problem.

    Class 08 (connection exceptions), the SQLSTATEs in _RETRIABLE, and errors libpq raises
    itself without a SQLSTATE (connection refused, lost or timed out). A UniqueViolation is a
    race with a concurrent insert (see _give_up).
    """
    if isinstance(exc, pgerrors.UniqueViolation):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    code = exc.sqlstate
    if code is None:
        return isinstance(exc, psycopg.OperationalError)
    return code in _RETRIABLE or code.startswith("08")


def _log_retry(method: Callable[..., Any]) -> Callable[[Any], None]:
    """Say in the log (INFO, logger ralph.store) which store call runs again, and why."""

    def before_sleep(state: Any) -> None:
        exc = state.outcome.exception()
        log.info(
            "PostgreSQL: %s runs again (attempt %d) after %s: %s",
            method.__name__,
            state.attempt_number + 1,
            type(exc).__name__,
            _first_line(exc),
        )

    return before_sleep


def _give_up(state: Any) -> bool:
    # base.py checks uniqueness before inserting, so a UniqueViolation means a concurrent
    # transaction won a race; one or two re-runs give the proper error (holder, "exists").
    exc = state.outcome.exception()
    return isinstance(exc, pgerrors.UniqueViolation) and state.attempt_number >= 3


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _CallState(threading.local):
    depth = 0  # public store calls in progress on this thread
    committed = False  # a write transaction committed during the current retried attempt


class _PgTx:
    """Named queries on one connection; in a write transaction (pipeline mode) `now` is read
    from the BEGIN batch only when first used, so that batch can travel with the first query."""

    def __init__(
        self,
        conn: psycopg.Connection[Row],
        sql: Mapping[str, list[str]],
        now: float | psycopg.Cursor[Row],
        pipeline: psycopg.Pipeline | None = None,
    ):
        self.conn = conn
        self.sql = sql
        self._now = now
        self._pipeline = pipeline

    @property
    def now(self) -> float:
        if not isinstance(self._now, float | int):
            row = self._now.fetchone()
            self._now = row["now"] if row else float("nan")
        return self._now

    def _run(self, name: str, params: Mapping[str, Any]) -> psycopg.Cursor[Row]:
        # A cursor per statement: in pipeline mode a reused one could show an earlier result.
        for statement in self.sql[name]:
            cur = self.conn.cursor()
            cur.execute(statement, params)
        return cur

    def _read(self, name: str, params: Mapping[str, Any]) -> psycopg.Cursor[Row]:
        cur = self._run(name, params)
        if self._pipeline is not None:
            # A Sync with each read: while the server then waits for this client it is "idle
            # in transaction", so idle_in_transaction_session_timeout (pgconn.py) ends the
            # session of a host cut off mid-transaction, and its locks with it.
            self._pipeline.sync()
        return cur

    def one(self, name: str, /, **params: Any) -> Row | None:
        return self._read(name, params).fetchone()

    def all(self, name: str, /, **params: Any) -> list[Row]:
        return self._read(name, params).fetchall()

    def run(self, name: str, /, **params: Any) -> int:
        cur = self._run(name, params)
        if self._pipeline is not None:
            if name in _DEFERRED:
                return -1
            self._pipeline.sync()
        return cur.rowcount

    def many(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            (statement,) = self.sql[name]
            self.conn.cursor().executemany(statement, rows)


class PostgresStore(SQLStore):
    """The store in a PostgreSQL database, shared by workers on any number of hosts."""

    backend = "postgres"

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        upgrade: bool = True,
        inspect: bool = False,
        create: bool = True,
    ):
        """Connect and set the schema up (rule: ralph/store/migrate.py); `upgrade=False` writes
        nothing and refuses an older or empty database, `inspect=True` only reads its state,
        `create=False` (read commands) refuses a database without ralph's schema."""
        self._create = create
        self._url = redact(url)
        self._given_url = url  # for connect_url() only; everything shown uses self._url
        self._secrets = _secrets(url)
        self.clock = None if clock is time.time else clock
        self._state = _CallState()
        self._write_sql, self._read_sql = _query_sets()
        try:
            given = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise errors.StoreError(
                f"malformed PostgreSQL URL {self._url}: {self._scrub(_first_line(exc))}",
                hint="use postgresql://user:password@host:port/dbname",
            ) from None
        self._conninfo = make_conninfo(url, **pgconn.connect_kwargs(given))  # limits, keepalives
        self._idle: list[psycopg.Connection[Row]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.schema = self._open_schema(upgrade=upgrade and not inspect, inspect=inspect)

    def __repr__(self) -> str:
        return f"PostgresStore({self._url!r})"

    @property
    def url(self) -> str:
        """The database URL, password shown as ***."""
        return self._url

    def connect_url(self) -> str:
        """The URL as given, password included: for an agent's RALPH_DB, never for output."""
        return self._given_url

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- connections and schema --------------------------------------------------------------
    # Not psycopg_pool: its background reconnects back off on their own (1, 2, 4, 8 s ...) on
    # top of the store's retries, so after a restart a worker could idle long after the server
    # is back. Here a retried operation connects at once, in its own thread, and one retry
    # policy governs everything. Threads take a connection per transaction; at most IDLE_MAX
    # are kept for reuse, and a broken or closed one is dropped when handed back.
    def _checkout(self) -> psycopg.Connection[Row]:
        with self._lock:
            if self._closed:
                raise errors.StoreError(f"the store at {self._url} is closed")
            if self._idle:
                return self._idle.pop()
        return self._new_connection(
            psycopg.connect(self._conninfo, autocommit=True, row_factory=dict_row)
        )

    @staticmethod
    def _new_connection(conn: psycopg.Connection[Row]) -> psycopg.Connection[Row]:
        conn.ralph_id = secrets.token_hex(12)  # its row in commit_marks
        return conn

    def _checkin(self, conn: psycopg.Connection[Row]) -> None:
        idle = not conn.closed and conn.info.transaction_status == pq.TransactionStatus.IDLE
        with self._lock:
            if idle and not self._closed and len(self._idle) < IDLE_MAX:
                self._idle.append(conn)
                return
        self._discard(conn)

    @staticmethod
    def _discard(conn: psycopg.Connection[Row]) -> None:
        with suppress(psycopg.Error):
            if not conn.closed and conn.info.transaction_status == pq.TransactionStatus.IDLE:
                conn.execute(_MARK_DROP, (conn.ralph_id,))
        conn.close()

    def _connect(self, **kwargs: Any) -> psycopg.Connection[Row]:
        """A direct connection; only a server still starting up is waited for."""
        for attempt in Retrying(
            retry=retry_if_exception(lambda e: any(s in str(e) for s in _STARTING)),
            stop=stop_after_delay(RETRY_SECONDS),
            reraise=True,
            wait=wait_random_exponential(multiplier=0.1, max=2),
        ):
            with attempt:
                try:
                    return psycopg.connect(self._conninfo, row_factory=dict_row, **kwargs)
                except psycopg.OperationalError as exc:
                    if any(s in str(exc) for s in _STARTING):
                        raise
                    raise errors.StoreError(
                        f"cannot connect to PostgreSQL at {self._url}: "
                        f"{self._scrub(_first_line(exc))}",
                        hint="check that the server is running and the URL is right",
                    ) from None
        raise AssertionError("unreachable")

    def _open_schema(self, *, upgrade: bool, inspect: bool) -> migrate.SchemaState:
        """Create or upgrade the schema; an advisory lock lets many processes start at once."""
        try:
            conn = self._new_connection(self._connect(autocommit=True))
            try:
                state = self._schema_state(conn)
                if not inspect and not self._create and not state.exists:
                    raise errors.NoStoreError(self._url)
                if not inspect:
                    migrate.refuse_newer(state)  # before anything is written
                    if state.version < state.latest:
                        if not upgrade:
                            raise migrate.too_old(state)
                        state = self._upgrade(conn)
                    if upgrade:
                        conn.execute(_MARKS_PRUNE)  # marks of connections that died silently
            except BaseException:
                conn.close()
                raise
            self._checkin(conn)  # the first connection of the store
        except psycopg.Error as exc:
            raise errors.StoreError(
                f"cannot set up the schema in {self._url}: {self._scrub(_first_line(exc))}"
            ) from None
        return state

    def _upgrade(self, conn: psycopg.Connection[Row]) -> migrate.SchemaState:
        """Run the pending migrations in one transaction, under the migration lock.

        The session lock is taken before BEGIN: the transaction then starts after the previous
        holder committed, so it sees that holder's tables in the catalog. A process arriving
        meanwhile waits on the lock, then finds nothing left to do.
        """
        conn.execute(pgconn.UNLIMITED)  # a migration may wait for the lock and run long
        conn.execute("SELECT pg_advisory_lock(%s, 1)", (LOCK_NAMESPACE,))
        try:
            with conn.transaction():
                state = self._schema_state(conn)
                migrate.refuse_newer(state)
                if state.version == state.latest:
                    return state
                if not state.exists and self._has_table(conn, "tasks"):
                    raise errors.StoreError(
                        f"{self._url} has a 'tasks' table that is not ralph's",
                        hint="give ralph a database (or schema) of its own",
                    )
                conn.execute(_META_CREATE)
                for _, script in migrate.steps(self.backend, state.version):
                    conn.execute(script)
                ralph = migrate.ralph_version()
                conn.execute(_META_PUT, (migrate.VERSION_KEY, str(state.latest)))
                conn.execute(_META_PUT, (migrate.RALPH_KEY, ralph))
                if state.exists:
                    data = {"from": state.version, "to": state.latest, "ralph": ralph}
                    conn.execute(_EVENT, (migrate.UPGRADE_EVENT, Jsonb(data)))
                return migrate.SchemaState(
                    self._url,
                    self.backend,
                    state.latest,
                    state.latest,
                    ralph=ralph,
                    upgraded_from=state.version,
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, 1)", (LOCK_NAMESPACE,))
            conn.execute(pgconn.LIMITED)  # the connection goes on to the pool

    def _schema_state(self, conn: psycopg.Connection[Row]) -> migrate.SchemaState:
        meta: dict[str, str] = {}
        if self._has_table(conn, "meta"):
            meta = {r["key"]: r["value"] for r in conn.execute(_META_READ)}
        return migrate.SchemaState(
            self._url,
            self.backend,
            int(meta.get(migrate.VERSION_KEY, 0)),
            migrate.latest(self.backend),
            ralph=meta.get(migrate.RALPH_KEY),
        )

    @staticmethod
    def _has_table(conn: psycopg.Connection[Row], name: str) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS found", (name,)).fetchone()
        return bool(row and row["found"])

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[_PgTx]:
        """Connections run in autocommit mode and this sends BEGIN itself. A read "transaction"
        sends no BEGIN at all: under READ COMMITTED each statement has its own snapshot anyway,
        so it would add nothing."""
        conn = self._checkout()
        try:
            if write:
                with self._write(conn) as tx:
                    yield tx
            else:
                now = self.clock() if self.clock else conn.execute(_NOW).fetchone()["now"]
                yield _PgTx(conn, self._read_sql, now)
        finally:
            self._checkin(conn)

    @contextmanager
    def _write(self, conn: psycopg.Connection[Row]) -> Iterator[_PgTx]:
        """A write transaction in pipeline mode: BEGIN, the commit mark and the clock read go
        out with the first statement whose rows are needed; the writes whose rows are not go
        out with the next read or with COMMIT."""
        mark = secrets.token_hex(8)
        committing = False
        try:
            with conn.pipeline() as pipeline:
                conn.cursor().execute(_BEGIN, prepare=False)
                conn.cursor().execute(_MARK, (conn.ralph_id, mark))
                now: float | psycopg.Cursor[Row]
                if self.clock:
                    now = self.clock()
                else:
                    now = conn.cursor()
                    now.execute(_NOW)
                yield _PgTx(conn, self._write_sql, now, pipeline)
                committing = True
                # Leaving the block sends the pending writes, COMMIT and one Sync, and raises
                # the first error among them.
                conn.cursor().execute("COMMIT", prepare=False)
        except (psycopg.OperationalError, pgerrors.IdleInTransactionSessionTimeout) as exc:
            self._rollback(conn)
            if not committing:
                raise
            self._lost_commit(conn, mark, exc)
        except BaseException:
            self._rollback(conn)
            raise
        self._state.committed = True

    @staticmethod
    def _rollback(conn: psycopg.Connection[Row]) -> None:
        with suppress(psycopg.Error):
            if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")

    def _lost_commit(self, conn: psycopg.Connection[Row], mark: str, exc: psycopg.Error) -> None:
        """The answer to COMMIT was lost: ask the server (once back) whether it happened."""
        try:
            committed = self._committed(conn.ralph_id, mark)
        except psycopg.Error:
            # Neither retrying (it may have committed) nor claiming success is safe.
            raise errors.StoreError(
                f"lost PostgreSQL at {self._url} during COMMIT and cannot tell whether it "
                f"happened: {self._scrub(_first_line(exc))}",
                hint="check the result with `ralph list` or `ralph log`",
            ) from None
        if not committed:
            raise exc

    def _committed(self, conn_id: str, mark: str) -> bool:
        for attempt in Retrying(
            stop=stop_after_delay(RETRY_SECONDS),
            reraise=True,
            retry=retry_if_exception(_transient),
            wait=wait_random_exponential(multiplier=0.1, max=1),
        ):
            with attempt, psycopg.connect(self._conninfo, autocommit=True) as conn:
                row = conn.execute(_MARK_READ, (conn_id,)).fetchone()
                return row is not None and row[0] == mark
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed, idle, self._idle = True, self._idle, []
        for conn in idle:
            self._discard(conn)

    # -- retries -----------------------------------------------------------------------------
    def _retry(self, method: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """Run one `@retried` store method, whole again while PostgreSQL fails transiently
        (`_transient`), for up to RETRY_SECONDS.

        Never after a write transaction of this call committed: running it again could apply
        it twice, so that ends in StoreError instead. A call made inside another store call
        runs as part of the outer one, which retries everything, so retries never multiply.
        """
        state = self._state
        if state.depth and not state.committed:  # the enclosing call retries everything
            state.depth += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                state.depth -= 1
        outer_committed = state.committed
        state.depth += 1
        try:
            for attempt in Retrying(
                retry=retry_if_exception(lambda e: _transient(e) and not state.committed),
                stop=stop_after_delay(RETRY_SECONDS) | _give_up,
                wait=wait_random_exponential(multiplier=0.02, max=1),
                before_sleep=_log_retry(method),
                reraise=True,
            ):
                with attempt:
                    state.committed = False
                    return method(self, *args, **kwargs)
        except psycopg.Error as exc:
            raise self._store_error(exc, state.committed) from None
        finally:
            state.depth -= 1
            state.committed = outer_committed
        raise AssertionError("unreachable")

    def _store_error(self, exc: psycopg.Error, committed: bool) -> errors.StoreError:
        detail = self._scrub(_first_line(exc))
        if committed:
            return errors.StoreError(
                f"lost PostgreSQL at {self._url} after part of the change was committed: {detail}",
                hint="check the result with `ralph list`",
            )
        if _transient(exc) and not isinstance(exc, pgerrors.UniqueViolation):
            return errors.StoreError(
                f"PostgreSQL at {self._url} kept failing for {RETRY_SECONDS:.0f}s: {detail}",
                hint="check that the server is running and reachable",
            )
        return errors.StoreError(f"PostgreSQL error at {self._url}: {detail}")
