"""The store is never created by a read, is checked, and is backed up: real files, real processes.

Corruption is real: the test overwrites pages in the middle of a store file, as a bad sector or
a torn copy would, and the commands must notice (SQLite reads pages lazily, so a store with a
sound first page opens fine and fails only where the damage is read).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ralph.store import open_store
from tests.support.clis import clean_env, git_repo, ralph

READS = [
    ["list"],
    ["list", "--json"],
    ["show", "T1"],
    ["ready", "--json"],
    ["stats"],
    ["status", "--json"],
    ["events"],
    ["worker", "list"],
    ["claim:show", "T1"],
    ["export"],
    ["dep", "tree", "T1"],
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    return clean_env(tmp_path / "home")


def filled_store(repo: Path, count: int = 400) -> Path:
    """A store in `repo` with `count` tasks, everything checkpointed into the main file."""
    path = repo / ".ralph" / "ralph.db"
    with open_store(path) as store:
        store.add_many(
            [{"id": f"T{n}", "title": f"task {n}", "description": "x" * 400} for n in range(count)]
        )
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def corrupt(path: Path) -> None:
    """Overwrite four pages in the middle of the file with junk, keeping its first page."""
    size = path.stat().st_size
    page = 4096
    middle = (size // 2 // page) * page
    with path.open("r+b") as f:
        f.seek(middle)
        f.write(b"\xa5" * page * 4)


@pytest.mark.parametrize("args", READS, ids=lambda a: " ".join(a))
def test_a_read_outside_a_project_creates_no_store_and_says_to_run_init(tmp_path, env, args):
    folder = tmp_path / "not-a-project"
    folder.mkdir()
    out = ralph(folder, env, *args)
    assert out.returncode == 7, out.stderr
    assert out.stderr.count("\n") == 1 and "ralph init" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(folder.iterdir()) == []


def test_a_read_in_a_repository_without_a_store_creates_none_and_a_write_still_does(tmp_path, env):
    repo = git_repo(tmp_path / "repo")
    out = ralph(repo, env, "list")
    assert out.returncode == 7 and "ralph init" in out.stderr
    assert not (repo / ".ralph").exists()
    assert ralph(repo, env, "add", "first").returncode == 0
    assert (repo / ".ralph" / "ralph.db").is_file()
    listed = ralph(repo, env, "list", "--json")
    assert listed.returncode == 0 and [t["title"] for t in json.loads(listed.stdout)] == ["first"]


def test_a_read_given_a_missing_db_path_creates_nothing(tmp_path, env):
    target = tmp_path / "elsewhere" / "store.db"
    out = ralph(tmp_path, env, "--db", str(target), "ready", "--json")
    assert out.returncode == 7 and str(target) in out.stderr
    assert not target.parent.exists()


def test_db_status_and_doctor_fail_on_a_store_with_corrupted_pages(tmp_path, env):
    repo = git_repo(tmp_path / "repo")
    path = filled_store(repo)
    healthy = ralph(repo, env, "db", "status")
    assert healthy.returncode == 0 and "quick_check" in healthy.stdout
    backup = ralph(repo, env, "db", "backup")
    assert backup.returncode == 0, backup.stderr
    corrupt(path)
    status = ralph(repo, env, "db", "status")
    assert status.returncode == 7, status.stdout + status.stderr
    assert "corrupted" in status.stderr and "ralph db restore" in status.stderr
    doctor = ralph(repo, env, "doctor", "--agent", "demo", "--json")
    assert doctor.returncode != 0
    store_check = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "task store"]
    assert store_check[0]["ok"] is False and "corrupted" in store_check[0]["detail"]


def test_the_malformed_error_names_the_newest_backup_and_restore_puts_it_back(tmp_path, env):
    repo = git_repo(tmp_path / "repo")
    path = filled_store(repo)
    first = ralph(repo, env, "db", "backup")
    second = ralph(repo, env, "db", "backup")
    assert first.returncode == 0 and second.returncode == 0
    newest = second.stdout.strip().rsplit(" ", 1)[-1]
    corrupt(path)
    broken = ralph(repo, env, "list", "--json")
    assert broken.returncode == 7
    assert f"ralph db restore {newest}" in broken.stderr
    assert broken.stderr.count("\n") == 1 and "Traceback" not in broken.stderr
    damaged = path.read_bytes()
    restored = ralph(repo, env, "db", "restore", newest)
    assert restored.returncode == 0, restored.stderr
    listed = ralph(repo, env, "list", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 400
    kept = list((repo / ".ralph" / "backups").glob("ralph-replaced-*.db"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged


def test_restore_is_refused_while_a_worker_of_the_store_is_live(tmp_path, env):
    repo = git_repo(tmp_path / "repo")
    path = filled_store(repo, count=3)
    copy = ralph(repo, env, "db", "backup").stdout.strip().rsplit(" ", 1)[-1]
    with open_store(path) as store:
        store.register_worker("w-live", heartbeat_interval=3600)
        store.add("added after the backup")
    before = path.read_bytes()
    out = ralph(repo, env, "db", "restore", copy)
    assert out.returncode == 7 and "w-live" in out.stderr
    assert path.read_bytes() == before
    assert not list((repo / ".ralph" / "backups").glob("ralph-replaced-*"))


def test_restore_refuses_a_file_that_is_not_a_ralph_store(tmp_path, env):
    repo = git_repo(tmp_path / "repo")
    path = filled_store(repo, count=3)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    before = path.read_bytes()
    out = ralph(repo, env, "db", "restore", str(junk))
    assert out.returncode == 7 and "cannot restore" in out.stderr
    assert path.read_bytes() == before


def test_each_run_takes_an_online_backup_and_keeps_the_newest_five(tmp_path, env):
    repo = git_repo(tmp_path / "repo")
    assert ralph(repo, env, "add", "one").returncode == 0
    for _ in range(7):
        out = ralph(repo, env, "run", "--agent-cmd", "true", "-q")
        assert out.returncode == 0, out.stderr
    copies = sorted((repo / ".ralph" / "backups").glob("ralph-2*.db"))
    assert len(copies) == 5
    # The newest copy is a sound store holding the task (as it was when that run started).
    conn = sqlite3.connect(copies[-1])
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT title FROM tasks").fetchall() == [("one",)]
    conn.close()


def test_db_backup_of_a_postgres_store_says_to_use_pg_dump(tmp_path, env, pg_url):
    out = ralph(tmp_path, env, "--db", pg_url, "db", "backup")
    assert out.returncode == 7 and "pg_dump" in out.stderr
    assert out.stderr.count("\n") == 1


def test_a_read_on_an_empty_postgres_database_creates_no_schema(tmp_path, env, pg_url):
    out = ralph(tmp_path, env, "--db", pg_url, "list", "--json")
    assert out.returncode == 7 and "ralph init" in out.stderr
    assert ralph(tmp_path, env, "--db", pg_url, "db", "status").stdout.count("none yet") == 1
    assert ralph(tmp_path, env, "--db", pg_url, "add", "first").returncode == 0
    listed = ralph(tmp_path, env, "--db", pg_url, "list", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1
