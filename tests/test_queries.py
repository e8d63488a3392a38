"""The named queries: common.sql written once and translated per dialect, the rest per dialect."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from ralph.store import open_store, queries


def test_common_placeholders_become_psycopg_ones_and_keep_their_casts():
    sql = "UPDATE t SET a = COALESCE(:a::jsonb, a), b = :b WHERE id = :id"
    assert queries.translate(sql, "postgres") == (
        "UPDATE t SET a = COALESCE(%(a)s::jsonb, a), b = %(b)s WHERE id = %(id)s"
    )


def test_sqlite_keeps_named_placeholders_and_drops_their_casts():
    sql = "UPDATE t SET a = COALESCE(:a::jsonb, a), b = :b WHERE id = :id"
    assert queries.translate(sql, "sqlite") == (
        "UPDATE t SET a = COALESCE(:a, a), b = :b WHERE id = :id"
    )


def test_colons_in_strings_and_comments_are_not_placeholders():
    sql = "SELECT 'at 12:30 :x' AS s, ':y''s' AS q -- :z here\nFROM t WHERE a = :a"
    assert queries.translate(sql, "postgres") == (
        "SELECT 'at 12:30 :x' AS s, ':y''s' AS q -- :z here\nFROM t WHERE a = %(a)s"
    )
    assert queries.translate(sql, "sqlite") == sql


def test_percent_signs_are_doubled_for_psycopg_only():
    sql = "SELECT * FROM t WHERE a LIKE '50%' AND b = :b -- 100%"
    assert queries.translate(sql, "postgres") == (
        "SELECT * FROM t WHERE a LIKE '50%%' AND b = %(b)s -- 100%%"
    )
    assert queries.translate(sql, "sqlite") == sql


def test_a_cast_sqlite_cannot_spell_is_refused_in_common_sql():
    with pytest.raises(ValueError, match="cast"):
        queries.translate("SELECT NULL::text AS x", "sqlite")
    assert queries.translate("SELECT NULL::text AS x", "postgres") == "SELECT NULL::text AS x"


def test_both_dialects_run_the_same_query_names_each_defined_once():
    common = set(queries.load("common.sql"))
    sqlite, postgres = set(queries.load("sqlite.sql")), set(queries.load("postgres.sql"))
    assert common and common.isdisjoint(sqlite) and common.isdisjoint(postgres)
    assert set(queries.for_dialect("sqlite")) == set(queries.for_dialect("postgres"))
    assert set(queries.for_dialect("sqlite")) == common | sqlite


def test_no_common_query_reaches_postgres_with_a_colon_placeholder():
    translated = queries.for_dialect("postgres")
    for name in queries.load("common.sql"):
        assert not re.search(r"(?<![:\w]):[a-z_]+", translated[name]), name


def test_every_sqlite_query_compiles_against_the_current_schema(tmp_path: Path):
    db = tmp_path / "ralph.db"
    open_store(db).close()
    broken = {}
    with closing(sqlite3.connect(db)) as conn:
        for name, sql in queries.for_dialect("sqlite").items():
            params = {p: None for p in re.findall(r"(?<![:\w]):(\w+)", sql)}
            try:
                conn.execute("EXPLAIN " + sql, params)  # raises on a syntax or schema error
            except sqlite3.Error as exc:
                broken[name] = str(exc)
    assert broken == {}
