"""Store retries you can see: every public store method is marked `@retried`, and PostgreSQL
runs a method whole again when a server-side timeout or a closed session ended the attempt."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import errors as pgerrors

from ralph.store import open_store
from ralph.store.base import SQLStore


class _Retries(logging.Handler):
    """The retries PostgresStore logs (logger ralph.store), with an event per error name."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.seen.set()


@contextmanager
def _logged_retries() -> Iterator[_Retries]:
    logger = logging.getLogger("ralph.store")
    handler, level = _Retries(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _with_setting(url: str, setting: str, value: str) -> str:
    """The URL with a server setting for its sessions (libpq `options=-c name=value`)."""
    return url + ("&" if "?" in url else "?") + "options=" + quote(f"-c {setting}={value}")


def test_every_public_store_method_is_marked_retried():
    unmarked = [
        name
        for name, method in inspect.getmembers(SQLStore, inspect.isfunction)
        if not name.startswith("_")
        and name not in ("transaction", "close")
        and not getattr(method, "retried", False)
    ]
    assert unmarked == [], "mark these @retried (ralph/store/core.py) so PostgreSQL retries them"


@pytest.mark.parametrize(
    ("code", "retried"),
    [
        ("55P03", True),  # lock_not_available
        ("57014", True),  # query_canceled
        ("40001", True),
        ("40P01", True),
        ("57P01", True),
        ("57P02", True),
        ("57P03", True),
        ("25P03", True),  # idle_in_transaction_session_timeout
        ("08006", True),  # connection_failure
        ("23514", False),  # check_violation: the request is wrong, not the server
        ("53100", False),  # disk_full: no use hammering it for 30 s
        ("42P01", False),  # undefined_table
    ],
)
def test_the_retry_predicate_covers_timeouts_shutdowns_and_lost_sessions(code, retried):
    from ralph.store.postgres import _transient

    assert _transient(pgerrors.lookup(code)()) is retried


def test_an_error_libpq_raises_without_a_sqlstate_is_a_lost_connection_and_retried():
    from ralph.store.postgres import _transient

    assert _transient(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert not _transient(psycopg.ProgrammingError("the query has 2 placeholders"))


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [("lock_timeout", "100", "LockNotAvailable"), ("statement_timeout", "300", "QueryCanceled")],
)
def test_a_lock_wait_cut_short_by_a_server_timeout_is_retried_until_the_lock_is_free(
    pg_url: str, setting: str, value: str, error: str
):
    with open_store(pg_url) as setup:
        task = setup.add("contended")
    outcome: dict[str, Any] = {}
    with (
        _logged_retries() as retries,
        open_store(_with_setting(pg_url, setting, value)) as store,
        psycopg.connect(pg_url) as holder,  # a transaction of its own, holding the row lock
    ):
        holder.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (task.id,))

        def rename() -> None:
            try:
                outcome["task"] = store.update(task.id, title="renamed")
            except Exception as exc:  # reported below
                outcome["error"] = exc

        thread = threading.Thread(target=rename)
        thread.start()
        assert retries.seen.wait(timeout=120), "the timed-out lock wait was not retried"
        holder.rollback()  # the barrier: the row is free once a retry has been seen
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["task"].title == "renamed"
        assert error in retries.messages[0] and "update" in retries.messages[0]
        assert len(store.events(task_id=task.id, kind="updated")) == 1  # applied once


def test_a_kept_connection_the_server_closed_when_idle_is_replaced_and_the_call_runs_once(
    pg_url: str,
):
    url = _with_setting(pg_url, "idle_session_timeout", "300")
    with (
        _logged_retries() as retries,
        open_store(url) as store,
        psycopg.connect(pg_url, autocommit=True) as admin,
    ):
        before = store.add("before")
        # A read last: PostgreSQL 15 arms idle_session_timeout after a plain query, but not
        # after the pipelined write transaction ends.
        assert store.get(before.id).title == "before"
        alive = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'ralph' AND datname = current_database()"
        )
        deadline = time.monotonic() + 120
        while admin.execute(alive).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the server to end the kept session
        assert admin.execute(alive).fetchone()[0] == 0
        store.add("after")
        assert retries.messages, "the dead kept connection was never used"
        assert [t.title for t in store.list()] == ["before", "after"]
