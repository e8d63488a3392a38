"""SQLite-only store behaviour: what a path can point at, schema versioning, URLs."""

from __future__ import annotations

import sqlite3
import sys

import pytest
import storefactory

from ralph import errors
from ralph.store import open_store, queries


def test_non_database_file_is_a_store_error_and_left_untouched(tmp_path):
    path = tmp_path / "notes.txt"
    content = b"these are my notes, not a database\n" * 200
    path.write_bytes(content)
    with pytest.raises(errors.StoreError) as info:
        open_store(path)
    assert "not a SQLite database" in str(info.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_directory_path_is_a_store_error(tmp_path):
    with pytest.raises(errors.StoreError) as info:
        open_store(tmp_path)
    assert "directory" in str(info.value)


def test_someone_elses_sqlite_database_is_a_store_error(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(errors.StoreError):
        open_store(path)
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["users"]


def test_schema_version_is_recorded_in_meta(tmp_path):
    path = tmp_path / "ralph.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert int(version) == queries.schema("sqlite")[-1][0]


def test_reopening_keeps_data_and_does_not_migrate_again(tmp_path):
    path = tmp_path / "ralph.db"
    with open_store(path) as store:
        task = store.add("kept")
    for _ in range(2):
        with open_store(path) as store:
            assert [t.id for t in store.list()] == [task.id]
            assert [e.kind for e in store.events()] == ["created"]


def test_database_from_a_newer_ralph_is_refused(tmp_path):
    path = tmp_path / "ralph.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(errors.StoreError) as info:
        open_store(path)
    assert "newer" in str(info.value)


def test_sqlite_url_and_bad_scheme(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/via-url.db") as store:
        store.add("t")
    assert (tmp_path / "via-url.db").is_file()
    with pytest.raises(errors.StoreError):
        open_store("mysql://localhost/ralph")


def test_wal_mode_is_on(tmp_path):
    path = tmp_path / "ralph.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


# -- the backend factory the contract suite uses ------------------------------------------


def test_missing_postgres_backend_skips_outside_ci(monkeypatch):
    monkeypatch.setitem(sys.modules, "ralph.store.postgres", None)  # import now fails
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        storefactory.require_backend("postgres")


def test_missing_postgres_backend_fails_under_ci(monkeypatch):
    monkeypatch.setitem(sys.modules, "ralph.store.postgres", None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        storefactory.require_backend("postgres")
