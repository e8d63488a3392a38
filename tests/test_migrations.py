"""Schema versions across releases: stores made by ralph 0.1.0 and 0.2.0 upgraded in place by
this ralph, two upgraders at once, and the real 0.1.0 and 0.2.0 code meeting a newer store.

ralph 0.1.0 and 0.2.0 run as themselves: their source is taken from this repository's history
(commit a30490d, tag v0.1.0; commit 02299dd for 0.2.0) and put first on sys.path of a child
process (tests/fixtures/run_ralph.py), next to the installed dependencies. Their stores are
filled by tests/fixtures/make_store_010.py and make_store_020.py through each release's own
API; nothing here writes an upgraded store by hand.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from ralph import __version__, errors
from ralph.store import migrate, open_store, queries, schema_status

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
RELEASE_010 = "a30490dbfbe9d4d11fc966ecc5e31865e276e437"  # ralph 0.1.0, schema 1
# ralph 0.2.0, schema 2: the last commit before the 0.3.0 work (the version was bumped in
# 62d9085, but the 0.2.0 CHANGELOG names features up to this commit, `ralph pause` among them).
RELEASE_020 = "02299dded139d099c34503ee9b2e158a96d25562"
# Backend plumbing, not task data: PostgreSQL's record of each connection's last commit.
PLUMBING = {"commit_marks"}
LATEST = migrate.latest("sqlite")


def in_ci() -> bool:
    import os

    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def extract_release(factory: pytest.TempPathFactory, commit: str, version: str) -> Path:
    """A release's `ralph` package, extracted from its commit (no network, no pip)."""
    dest = factory.mktemp(f"ralph-{version}")
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "ralph"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        reason = f"cannot read ralph {version} ({commit[:7]}) from the git history: {exc}"
        if in_ci():
            pytest.fail(reason + " (CI=true needs it: clone with full history)", pytrace=False)
        pytest.skip(reason)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python before 3.11.4; the archive is this repository's own history
            tar.extractall(dest)  # noqa: S202
    return dest


@pytest.fixture(scope="session")
def ralph010(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ralph 0.1.0's package, extracted from the release commit (no network, no pip)."""
    dest = extract_release(tmp_path_factory, RELEASE_010, "0.1.0")
    version = run(dest, "--version").stdout
    assert version.strip() == "ralph 0.1.0", version
    return dest


@pytest.fixture(scope="session")
def ralph020(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ralph 0.2.0's package, extracted from its last commit (see RELEASE_020)."""
    dest = extract_release(tmp_path_factory, RELEASE_020, "0.2.0")
    version = run(dest, "--version").stdout
    assert version.strip() == "ralph 0.2.0 (store schema 2)", version
    return dest


def run(src: Path | str, *args: str, db: str | None = None, at: float | None = None, **kw: Any):
    """`ralph [--db DB] ARGS` from source tree `src` ("-": this ralph), as a real process."""
    return subprocess.run(
        launch(src, *args, db=db, at=at), capture_output=True, text=True, timeout=120, **kw
    )


def launch(src: Path | str, *args: str, db: str | None = None, at: float | None = None):
    argv = [sys.executable, str(FIXTURES / "run_ralph.py"), str(src)]
    if at is not None:
        argv += ["--at", repr(at)]
    return [*argv, "--", *(["--db", db] if db else []), *args]


def make_010_store(ralph010: Path, url: str, maker: str = "make_store_010.py") -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            str(FIXTURES / "run_ralph.py"),
            str(ralph010),
            "--script",
            str(FIXTURES / maker),
            "--",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def make_020_store(ralph020: Path, url: str) -> dict[str, Any]:
    return make_010_store(ralph020, url, "make_store_020.py")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A missing store: a path in a fresh .ralph/ or a fresh PostgreSQL database."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / ".ralph" / "ralph.db")


def is_pg(url: str) -> bool:
    return url.startswith("postgresql://")


def dump(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as dicts, in a stable order."""
    tables: dict[str, list[dict[str, Any]]] = {}
    if is_pg(url):
        with psycopg.connect(url, row_factory=dict_row) as conn:
            names = [
                r["tablename"]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            ]
            for name in names:
                tables[name] = [dict(r) for r in conn.execute(f'SELECT * FROM "{name}"')]
    else:
        conn = sqlite3.connect(f"file:{url}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for name in names:
                tables[name] = [dict(r) for r in conn.execute(f'SELECT * FROM "{name}"')]
        finally:
            conn.close()
    key = lambda row: json.dumps(row, sort_keys=True, default=str)  # noqa: E731
    return {name: sorted(rows, key=key) for name, rows in tables.items()}


def project(rows: list[dict[str, Any]], columns: set[str]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k in columns} for row in rows]


def schema_of(url: str) -> dict[str, Any]:
    """Tables with their columns, and indexes: what a store's schema is, apart from its rows."""
    if is_pg(url):
        with psycopg.connect(url) as conn:
            columns = conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = current_schema() "
                "ORDER BY table_name, column_name"
            ).fetchall()
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "ORDER BY indexname"
            ).fetchall()
        return {"columns": columns, "indexes": indexes}
    conn = sqlite3.connect(url)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        columns = {
            t: sorted(tuple(r)[1:] for r in conn.execute(f'PRAGMA table_info("{t}")'))
            for t in tables
        }
        indexes = sorted(
            conn.execute("SELECT name, tbl_name, sql FROM sqlite_master WHERE type='index'")
        )
    finally:
        conn.close()
    return {"columns": columns, "indexes": indexes}


def expected_tokens(before: dict[str, list[dict[str, Any]]]) -> dict[int, int | None]:
    """For each 0.1.0 attempt, the claim it ran under: its worker's last claim of that task
    made before the attempt started (what the 0.1.0 loop did: claim, then start the attempt)."""
    found = {}
    for attempt in before["attempts"]:
        claims = [
            c["id"]
            for c in before["claims"]
            if c["task_id"] == attempt["task_id"]
            and c["worker"] == attempt["worker"]
            and c["claimed_at"] <= attempt["started_at"]
        ]
        found[attempt["id"]] = max(claims) if claims else None
    return found


# -- upgrading a 0.1.0 store -------------------------------------------------------------------
def test_a_010_store_is_upgraded_at_first_open_keeping_every_row_and_its_meaning(
    ralph010: Path, store_url: str
):
    made = make_010_store(ralph010, store_url)
    before = dump(store_url)
    assert before["meta"] == [{"key": "schema_version", "value": "1"}]

    status = run("-", "db", "status", db=store_url)
    assert status.returncode == 0, status.stderr
    assert "schema   1 (ralph 0.1.0)" in status.stdout
    assert (
        "pending  " + ", ".join(map(str, range(2, LATEST + 1))) + ": run `ralph db upgrade`"
        in status.stdout
    )
    assert dump(store_url) == before  # status writes nothing

    # Any opening by this ralph upgrades, a read-only command included.
    ready = run("-", "ready", "--json", db=store_url)
    assert ready.returncode == 0, ready.stderr
    assert [t["id"] for t in json.loads(ready.stdout)] == [made["tasks"]["lost"]]
    assert f"from schema 1 to {LATEST}" in ready.stderr
    after = dump(store_url)

    # Every old row is still there with the same values; the upgrade added one event.
    for table, rows in before.items():
        if table in PLUMBING | {"meta", "events", "sqlite_sequence"}:
            continue
        assert project(after[table], set(rows[0]) if rows else set()) == rows, table
    if "sqlite_sequence" in before:  # ids (fencing tokens among them) go on from where they were
        sequences = {r["name"]: r["seq"] for r in before["sqlite_sequence"]}
        sequences["events"] += 1
        assert {r["name"]: r["seq"] for r in after["sqlite_sequence"]} == sequences
    old_events = {e["id"] for e in before["events"]}
    assert [e for e in after["events"] if e["id"] in old_events] == before["events"]
    new_events = [e for e in after["events"] if e["id"] not in old_events]
    assert [e["kind"] for e in new_events] == [migrate.UPGRADE_EVENT]
    data = new_events[0]["data"]
    data = json.loads(data) if isinstance(data, str) else data
    assert (data["from"], data["to"], data["ralph"]) == (1, LATEST, __version__)
    assert {r["key"]: r["value"] for r in after["meta"]} == {
        "schema_version": str(migrate.latest("postgres" if is_pg(store_url) else "sqlite")),
        "ralph_version": __version__,
    }

    # New columns: what 0.1.0 knew, derived from its rows; what it never recorded is empty.
    assert all(t["commit_sha"] is None and t["discovered_from"] is None for t in after["tasks"])
    hosts = {w["name"]: w["host"] for w in before["workers"]}
    tokens = expected_tokens(before)
    for attempt in after["attempts"]:
        assert attempt["token"] == tokens[attempt["id"]]
        assert attempt["host"] == hosts[attempt["worker"]]
        assert attempt["cost_estimated"] == 0
    live = made["live"]
    (running,) = [a for a in after["attempts"] if a["id"] == live["attempt"]]
    assert running["token"] == live["token"] and running["ended_at"] is None
    assert after["control"] == []

    if not is_pg(store_url):  # the copy kept beside it is the store exactly as it was
        backup = Path(f"{store_url}.0.1.0.bak")
        assert f"copy kept: {backup}" in ready.stderr
        assert dump(str(backup)) == before

    # The upgrade ran once: opening again changes nothing.
    again = run("-", "db", "upgrade", db=store_url)
    assert again.returncode == 0 and "nothing to upgrade" in again.stdout, again.stderr
    assert dump(store_url) == after


def test_the_live_claim_of_a_010_store_completes_with_its_fencing_token(
    ralph010: Path, store_url: str
):
    made = make_010_store(ralph010, store_url)
    live, tasks = made["live"], made["tasks"]
    stale = run("-", "done", live["task"], "--token", str(live["token"] - 1), db=store_url)
    assert stale.returncode == errors.LeaseLostError.exit_code, stale.stderr
    assert f"from schema 1 to {LATEST}" in stale.stderr  # that first opening upgraded the store
    token = str(live["token"])
    done = run(
        "-", "done", live["task"], "--token", token, "--worker", live["worker"], db=store_url
    )
    assert done.returncode == 0, done.stderr
    assert sorted(line.split()[-1] for line in done.stdout.splitlines()[1:]) == sorted(
        [tasks["child_open"], tasks["blocked"]]
    )
    with open_store(store_url) as store:
        assert store.get(live["task"]).status == "done"
        assert store.active_claim(live["task"]) is None


def test_the_expiry_of_a_010_claim_closes_its_unfinished_attempt_as_crashed(
    ralph010: Path, store_url: str
):
    made = make_010_store(ralph010, store_url)
    live = made["live"]
    with open_store(store_url) as store:
        store.expire(live["token"], force=True)
        (attempt,) = [a for a in store.attempts(live["task"]) if a.id == live["attempt"]]
        assert attempt.outcome == "crashed" and attempt.ended_at is not None
        assert not attempt.counted


def test_an_upgraded_sqlite_store_goes_back_to_010_from_its_copy(ralph010: Path, tmp_path: Path):
    db = tmp_path / ".ralph" / "ralph.db"
    db.parent.mkdir()
    made = make_010_store(ralph010, str(db))
    assert run("-", "add", "made by 0.2.0", db=str(db)).returncode == 0
    refused = run(ralph010, "list", "--json", db=str(db))
    assert refused.returncode == errors.StoreError.exit_code
    # The README's way back: stop the workers, put the copy in place, run the old ralph.
    backup = db.with_name("ralph.db.0.1.0.bak")
    for leftover in (db, db.with_name("ralph.db-wal"), db.with_name("ralph.db-shm")):
        leftover.unlink(missing_ok=True)
    backup.rename(db)
    back = run(ralph010, "list", "--json", db=str(db))
    assert back.returncode == 0, back.stderr
    assert {t["id"] for t in json.loads(back.stdout)} == set(made["tasks"].values())


def test_db_upgrade_runs_the_migrations_explicitly_and_once(ralph010: Path, store_url: str):
    make_010_store(ralph010, store_url)
    first = run("-", "db", "upgrade", db=store_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"Upgraded {'' if is_pg(store_url) else store_url}")
    assert f"from schema 1 to {LATEST}" in first.stdout
    status = run("-", "db", "status", "--json", db=store_url)
    assert (
        json.loads(status.stdout)["schema"] == LATEST and json.loads(status.stdout)["pending"] == []
    )
    second = run("-", "db", "upgrade", db=store_url)
    assert "nothing to upgrade" in second.stdout


def test_an_opening_that_may_not_upgrade_refuses_an_older_store_and_writes_nothing(
    ralph010: Path, store_url: str
):
    make_010_store(ralph010, store_url)
    before = dump(store_url)
    with pytest.raises(errors.StoreError) as info:
        open_store(store_url, upgrade=False)
    assert "has schema 1, older than this ralph" in info.value.line()
    assert "ralph db upgrade" in info.value.line()
    assert schema_status(store_url).pending == list(range(2, LATEST + 1))
    assert dump(store_url) == before


def test_upgrading_a_010_store_gives_the_schema_of_a_new_store(
    ralph010: Path, store_url: str, tmp_path: Path, request: pytest.FixtureRequest
):
    """Every schema change ships as a migration: a 0.1.0 store upgraded has exactly the tables,
    columns and indexes of a store created now."""
    make_010_store(ralph010, store_url)
    open_store(store_url).close()
    fresh = request.getfixturevalue("pg_url") if is_pg(store_url) else str(tmp_path / "new.db")
    open_store(fresh).close()
    assert schema_of(store_url) == schema_of(fresh)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_schema_1_is_the_010_release_schema_unchanged(backend: str):
    """Stores in use were made from these files: a change belongs in a new migration."""
    name = f"ralph/store/schema/{backend}_0001.sql"
    released = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{RELEASE_010}:{name}"], capture_output=True, text=True
    )
    if released.returncode != 0:
        pytest.skip(f"no git history: {released.stderr.strip()}")
    assert (ROOT / name).read_text() == released.stdout
    assert [v for v, _ in queries.schema("sqlite")] == [v for v, _ in queries.schema("postgres")]


# -- two upgraders at once ---------------------------------------------------------------------
def test_two_processes_upgrading_at_once_one_upgrades_the_other_waits_then_works(
    ralph010: Path, store_url: str, request: pytest.FixtureRequest, tmp_path: Path
):
    rounds = 3
    for n in range(rounds):
        url = store_url
        if n:  # a fresh store for each round
            url = (
                request.getfixturevalue("pg_server").fresh_database(f"t_upgrade_race_{n}")
                if is_pg(store_url)
                else str(tmp_path / f"round{n}" / ".ralph" / "ralph.db")
            )
        make_010_store(ralph010, url)
        at = time.time() + 1.0
        procs = [
            subprocess.Popen(
                launch("-", "add", f"task from process {i}", db=url, at=at),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        outcomes = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        assert [rc for rc, _, _ in outcomes] == [0, 0], outcomes
        assert sum(f"from schema 1 to {LATEST}" in err for _, _, err in outcomes) == 1, outcomes
        with open_store(url) as store:
            assert store.schema.version == LATEST and store.schema.upgraded_from is None
            kinds = [e.kind for e in store.events(limit=1000)]
            assert kinds.count(migrate.UPGRADE_EVENT) == 1
            titles = {t.title for t in store.list()}
            assert {"task from process 0", "task from process 1"} <= titles


# -- upgrading a 0.2.0 store -------------------------------------------------------------------
# What schema 3 added, and what each new column holds for a row written before it.
NEW_IN_3 = {
    "attempts": {"kind": "task", "model": None},
    "tasks": {"review_notes": None},
    "workers": {"sandbox": None},
}


def test_a_020_store_is_upgraded_at_first_open_keeping_every_row_and_its_meaning(
    ralph020: Path, store_url: str
):
    made = make_020_store(ralph020, store_url)
    before = dump(store_url)
    assert {r["key"]: r["value"] for r in before["meta"]} == {
        "schema_version": "2",
        "ralph_version": "0.2.0",
    }
    assert [r["key"] for r in before["control"]] == ["pause"]  # `ralph pause` by 0.2.0
    live = made["live"]
    assert any(c["id"] == live["token"] and c["state"] == "live" for c in before["claims"])

    status = run("-", "db", "status", db=store_url)
    assert status.returncode == 0, status.stderr
    assert "schema   2 (ralph 0.2.0)" in status.stdout
    assert "pending  3: run `ralph db upgrade`" in status.stdout
    assert dump(store_url) == before  # status writes nothing

    # Any opening by this ralph upgrades, a read-only command included.
    ready = run("-", "ready", "--json", db=store_url)
    assert ready.returncode == 0, ready.stderr
    assert f"from schema 2 to {LATEST}" in ready.stderr
    # 0.2.0's pause holds the workers, not what is ready
    tasks = made["tasks"]
    assert {t["id"] for t in json.loads(ready.stdout)} == {tasks["found"], tasks["lost"]}
    after = dump(store_url)

    # Every old row is still there with the same values; the upgrade added one event.
    for table, rows in before.items():
        if table in PLUMBING | {"meta", "events", "sqlite_sequence"}:
            continue
        assert project(after[table], set(rows[0]) if rows else set()) == rows, table
    if "sqlite_sequence" in before:  # ids (fencing tokens among them) go on from where they were
        sequences = {r["name"]: r["seq"] for r in before["sqlite_sequence"]}
        sequences["events"] += 1
        assert {r["name"]: r["seq"] for r in after["sqlite_sequence"]} == sequences
    old_events = {e["id"] for e in before["events"]}
    assert [e for e in after["events"] if e["id"] in old_events] == before["events"]
    new_events = [e for e in after["events"] if e["id"] not in old_events]
    assert [e["kind"] for e in new_events] == [migrate.UPGRADE_EVENT]
    data = new_events[0]["data"]
    data = json.loads(data) if isinstance(data, str) else data
    assert (data["from"], data["to"], data["ralph"]) == (2, LATEST, __version__)
    assert {r["key"]: r["value"] for r in after["meta"]} == {
        "schema_version": str(LATEST),
        "ralph_version": __version__,
    }

    # New columns: what 0.2.0 never recorded is empty; its attempts were all task attempts.
    for table, values in NEW_IN_3.items():
        assert all(project([r], set(values)) == [values] for r in after[table]), table
    assert after["reviews"] == []
    (running,) = [a for a in after["attempts"] if a["id"] == live["attempt"]]
    assert running["token"] == live["token"] and running["ended_at"] is None

    # The rows mean what they meant: read back through this ralph's API.
    with open_store(store_url, upgrade=False) as store:
        assert store.get(tasks["child_done"]).commit_sha == "c" * 40
        assert store.get(tasks["found"]).discovered_from == tasks["child_done"]
        assert store.get(tasks["failed"]).status == "failed"
        assert store.active_claim(live["task"]).token == live["token"]
        assert store.paused()["reason"] == "deploying"
        landed = store.attempts(tasks["child_done"])
        assert [(a.outcome, a.counted, a.cost_estimated) for a in landed] == [
            ("merge_conflict", False, False),
            ("success", True, True),
        ]
    shown = json.loads(run("-", "show", tasks["failed"], "--json", db=store_url).stdout)
    assert (shown["attempts"], shown["launches"]) == (1, 2)  # the rate limit counted nothing

    if not is_pg(store_url):  # the copy kept beside it is the store exactly as it was
        backup = Path(f"{store_url}.0.2.0.bak")
        assert f"copy kept: {backup}" in ready.stderr
        assert dump(str(backup)) == before

    # The upgrade ran once: opening again changes nothing.
    again = run("-", "db", "upgrade", db=store_url)
    assert again.returncode == 0 and "nothing to upgrade" in again.stdout, again.stderr
    assert dump(store_url) == after


def test_the_live_claim_of_a_020_store_completes_with_its_token_and_its_attempt_gets_a_model(
    ralph020: Path, store_url: str
):
    from ralph.models import AttemptEnd

    made = make_020_store(ralph020, store_url)
    live, tasks = made["live"], made["tasks"]
    with open_store(store_url) as store:
        assert store.schema.upgraded_from == 2
        with pytest.raises(errors.LeaseLostError):
            store.finish(live["task"], worker=live["worker"], token=live["token"] - 1,
                         verdict="done")  # fmt: skip
        _, unblocked = store.finish(
            live["task"],
            worker=live["worker"],
            token=live["token"],
            verdict="done",
            attempt_id=live["attempt"],
            end=AttemptEnd(outcome="success", cost_usd=0.2, model="sonnet-4"),
            commit="d" * 40,
        )
        assert unblocked == [tasks["child_open"]]
        (attempt,) = [a for a in store.attempts(live["task"]) if a.id == live["attempt"]]
        assert (attempt.outcome, attempt.model, attempt.kind) == ("success", "sonnet-4", "task")
        assert store.get(live["task"]).status == "done"


def test_upgrading_a_020_store_gives_the_schema_of_a_new_store(
    ralph020: Path, store_url: str, tmp_path: Path, request: pytest.FixtureRequest
):
    make_020_store(ralph020, store_url)
    open_store(store_url).close()
    fresh = request.getfixturevalue("pg_url") if is_pg(store_url) else str(tmp_path / "new.db")
    open_store(fresh).close()
    assert schema_of(store_url) == schema_of(fresh)


@pytest.mark.parametrize("command", [["list"], ["add", "from 0.2.0"], ["ready", "--json"]])
def test_ralph_020_refuses_the_upgraded_store_with_one_line_exit_7_and_writes_nothing(
    ralph020: Path, store_url: str, command: list[str]
):
    make_020_store(ralph020, store_url)
    upgraded = run("-", "list", db=store_url)
    assert upgraded.returncode == 0 and f"from schema 2 to {LATEST}" in upgraded.stderr
    before = _fingerprint(store_url)
    old = run(ralph020, *command, db=store_url)
    assert old.returncode == 7, old.stderr
    (line,) = old.stderr.splitlines()
    assert f"has schema {LATEST} (ralph {__version__}), newer than this ralph 0.2.0" in line
    assert f"install ralph {__version__} or later" in line
    assert old.stdout == ""
    assert _fingerprint(store_url) == before


# -- mixed versions ----------------------------------------------------------------------------
def _fingerprint(url: str) -> Any:
    """What would change if anything were written: the rows, and for SQLite the file's bytes."""
    if is_pg(url):
        return dump(url)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(url).parent.iterdir()}
    return dump(url), files


@pytest.mark.parametrize("command", [["list"], ["add", "from 0.1.0"], ["ready", "--json"]])
def test_ralph_010_refuses_a_newer_store_with_one_line_exit_7_and_writes_nothing(
    ralph010: Path, store_url: str, command: list[str]
):
    with open_store(store_url) as store:
        task = store.add("made by the new ralph")
        store.claim(task.id, "w1", lease=600)
    before = _fingerprint(store_url)
    old = run(ralph010, *command, db=store_url)
    assert old.returncode == 7
    (line,) = old.stderr.splitlines()
    assert f"schema version {LATEST}, newer than this ralph (1)" in line and "upgrade ralph" in line
    assert old.stdout == ""
    assert _fingerprint(store_url) == before


def test_a_store_from_a_newer_ralph_is_refused_before_anything_is_written(store_url: str):
    """This ralph meeting the next schema of a future ralph: one line naming both, the journal mode
    of a SQLite file included left as it was."""
    open_store(store_url).close()
    if is_pg(store_url):
        with psycopg.connect(store_url) as conn:
            conn.execute(
                "UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(LATEST + 1),)
            )
            conn.execute("UPDATE meta SET value = '0.9.0' WHERE key = 'ralph_version'")
    else:
        conn = sqlite3.connect(store_url, isolation_level=None)
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(LATEST + 1),))
        conn.execute("UPDATE meta SET value = '0.9.0' WHERE key = 'ralph_version'")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.close()
    before = _fingerprint(store_url)
    for args in (["worker", "list"], ["add", "x"], ["db", "upgrade"]):
        refused = run("-", *args, db=store_url)
        assert refused.returncode == 7
        (line,) = refused.stderr.splitlines()
        assert (
            f"has schema {LATEST + 1} (ralph 0.9.0), "
            f"newer than this ralph {__version__} (schema {LATEST})" in line
        )
        assert "install ralph 0.9.0 or later on this host" in line
    assert _fingerprint(store_url) == before
    status = run("-", "db", "status", db=store_url)
    assert status.returncode == 0 and "install ralph 0.9.0" in status.stdout
    assert _fingerprint(store_url) == before


# -- a missing store ---------------------------------------------------------------------------
def test_db_status_on_a_missing_store_creates_nothing_and_db_upgrade_creates_it(tmp_path: Path):
    db = tmp_path / "ralph.db"
    status = run("-", "db", "status", db=str(db))
    assert status.returncode == 0 and "schema   none yet" in status.stdout
    assert not db.exists()
    with pytest.raises(errors.StoreError, match="no ralph store"):
        open_store(db, upgrade=False)
    assert not db.exists()
    created = run("-", "db", "upgrade", db=str(db))
    assert created.returncode == 0 and created.stdout.startswith(f"Created {db} at schema {LATEST}")


# -- releases ----------------------------------------------------------------------------------
def test_version_prints_the_release_and_the_schema_it_writes():
    shown = run("-", "--version")
    assert shown.stdout.strip() == f"ralph {__version__} (store schema {migrate.latest('sqlite')})"


def test_the_changelog_has_an_entry_for_this_version_saying_what_to_do_when_upgrading():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = [ln for ln in changelog.splitlines() if ln.startswith("## ")]
    assert headings[0].startswith(f"## {__version__} "), headings[:1]
    newest = changelog.split(headings[0], 1)[1].split("\n## ", 1)[0]
    assert "Upgrading" in newest


def test_a_010_worker_already_running_keeps_working_after_the_upgrade(
    ralph010: Path, store_url: str
):
    """The rolling-upgrade promise: migrations only add, so old queries still run."""
    made = make_010_store(ralph010, store_url)
    task = made["tasks"]["lost"]
    worker = subprocess.Popen(
        [
            sys.executable,
            str(FIXTURES / "run_ralph.py"),
            str(ralph010),
            "--script",
            str(FIXTURES / "old_worker_010.py"),
            "--",
            store_url,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdin and worker.stdout
        worker.stdin.write(task + "\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "ready"
        upgraded = run("-", "db", "upgrade", db=store_url)
        assert upgraded.returncode == 0 and f"from schema 1 to {LATEST}" in upgraded.stdout
        out, err = worker.communicate("go\n", timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert out.startswith("ok ")
    with open_store(store_url) as store:
        assert store.get(task).status == "done"
        assert store.get(out.split()[1]).title == "follow-up by the old worker"
