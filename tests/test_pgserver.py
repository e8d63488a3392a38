"""The throwaway PostgreSQL server and its fixtures (tests/pgserver.py, tests/conftest.py)."""

from __future__ import annotations

import psycopg
import pytest

try:
    from pgserver import PgServer
except ImportError:
    from tests.pgserver import PgServer


def test_select_one(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_main_database_reachable(pg_server: PgServer) -> None:
    with psycopg.connect(pg_server.url) as conn:
        row = conn.execute("select current_database(), current_setting('max_connections')")
        name, _ = row.fetchone() or (None, None)
    assert pg_server.url.endswith("/" + str(name))


def test_fresh_database_is_empty(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
    assert row == (0,)


def test_two_pg_urls_are_distinct_databases(pg_server: PgServer, pg_url: str) -> None:
    other = pg_server.fresh_database()
    try:
        assert other != pg_url
        with psycopg.connect(pg_url) as a, psycopg.connect(other) as b:
            name_a = a.execute("select current_database()").fetchone()
            name_b = b.execute("select current_database()").fetchone()
            assert name_a != name_b
            a.execute("create table only_in_a (x int)")
            a.commit()
            seen = b.execute("select to_regclass('only_in_a') is null").fetchone()
            assert seen == (True,)
    finally:
        pg_server.drop_database(other)


def test_template_clone_copies_data(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("create table t (x int)")
        conn.execute("insert into t values (7)")
    template = pg_url.rsplit("/", 1)[1]
    clone = pg_server.fresh_database(template=template)
    try:
        with psycopg.connect(clone) as conn:
            assert conn.execute("select x from t").fetchall() == [(7,)]
    finally:
        pg_server.drop_database(clone)


def test_drop_database_removes_it(pg_server: PgServer) -> None:
    url = pg_server.fresh_database()
    name = url.rsplit("/", 1)[1]
    pg_server.drop_database(url)
    with psycopg.connect(pg_server.admin_url) as conn:
        row = conn.execute("select count(*) from pg_database where datname = %s", (name,))
        assert row.fetchone() == (0,)


def test_bad_database_name_rejected(pg_server: PgServer) -> None:
    with pytest.raises(ValueError):
        pg_server.fresh_database("Robert'); drop table students;--")


def test_immediate_stop_and_start_keeps_data(pg_server: PgServer, pg_url: str) -> None:
    if not pg_server.owned:
        pytest.skip("server comes from $RALPH_TEST_PG; cannot stop/start it")
    port = pg_server.port
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("create table survivor (id int primary key, note text)")
        conn.execute("insert into survivor values (1, 'before crash')")
    held = psycopg.connect(pg_url, autocommit=True)  # a session open across the crash
    try:
        pg_server.stop("immediate")
        assert not pg_server.is_running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg_url, connect_timeout=2)
        with pytest.raises(psycopg.OperationalError):
            held.execute("select 1")
    finally:
        held.close()
        if not pg_server.is_running():
            pg_server.start()
    assert pg_server.is_running()
    assert pg_server.port == port
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("select id, note from survivor").fetchall() == [(1, "before crash")]
