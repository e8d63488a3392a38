"""The PostgreSQL backend: same queries as SQLite, database clock, schema setup, redaction,
many processes racing, and a server crash in the middle of a run."""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from ralph import errors
from ralph.store import open_store, queries
from ralph.store.postgres import PostgresStore, redact

# Racing processes fork from a server that imported this module, ralph's store and psycopg
# once: each is still a process of its own with its own connection, without ~0.3 s of
# interpreter start-up and imports apiece (spawn). Not plain fork: the test process has threads.
PROCS = multiprocessing.get_context("forkserver")
PROCS.set_forkserver_preload([__name__, "ralph.store.postgres", "psycopg"])
PASSWORD = "hunter2-s3cret"


def _with_password(url: str, password: str = PASSWORD) -> str:
    """The test server trusts every local login, so any password connects."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


def _drain(url: str, name: str, barrier: Any, results: Any, pause: float) -> None:
    """Worker process: claim and finish tasks until none is ready; report what happened."""
    claims, failures = 0, []
    try:
        store = open_store(url)
    except Exception as exc:  # reported to the parent, which fails the test
        barrier.abort()
        results.put((name, 0, [f"open: {type(exc).__name__}: {exc}"]))
        return
    barrier.wait(timeout=120)
    with store:
        while True:
            try:
                claim = store.claim_next(name, lease=600)
                if claim is None:
                    break
                if pause:
                    time.sleep(pause)
                store.done(claim.task_id, token=claim.token)
                claims += 1
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                break
    results.put((name, claims, failures))


def _start_workers(url: str, count: int, pause: float = 0.0) -> tuple[list[Any], Any, Any]:
    barrier = PROCS.Barrier(count + 1)
    results = PROCS.Queue()
    procs = [
        PROCS.Process(target=_drain, args=(url, f"w{n:02d}", barrier, results, pause))
        for n in range(count)
    ]
    for proc in procs:
        proc.start()
    return procs, barrier, results


def _collect(procs: list[Any], results: Any, timeout: float = 120) -> list[tuple]:
    try:
        reports = [results.get(timeout=timeout) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    return reports


def _assert_each_claimed_and_done_once(url: str, ids: set[str]) -> None:
    with open_store(url) as store:
        claimed = Counter(e.task_id for e in store.events(kind="claimed"))
        done = Counter(e.task_id for e in store.events(kind="done"))
        assert store.status_counts()["done"] == len(ids)
        assert store.claims() == []
    assert claimed == Counter(ids)
    assert done == Counter(ids)


# -- queries ---------------------------------------------------------------------------------
def test_postgres_sql_defines_exactly_the_query_names_of_sqlite_sql():
    assert set(queries.load("postgres.sql")) == set(queries.load("sqlite.sql"))


def test_read_transactions_run_the_queries_without_row_locks():
    from ralph.store.postgres import _query_sets

    def locking(sql: dict[str, list[str]]) -> set[str]:
        lock = re.compile(r"\bFOR\s+(NO\s+KEY\s+)?(UPDATE|SHARE)\b", re.IGNORECASE)
        return {name for name, stmts in sql.items() if any(lock.search(s) for s in stmts)}

    write, read = _query_sets()
    assert {"task_get", "task_ready_for_claim", "claim_live_for_task"} <= locking(write)
    assert locking(read) == set()


def test_schema_file_is_found_for_the_postgres_backend():
    assert [version for version, _ in queries.schema("postgres")][0] == 1


# -- clock -----------------------------------------------------------------------------------
def test_default_clock_is_the_database_clock_read_once_per_transaction(pg_url):
    with open_store(pg_url) as store:  # open_store's default clock, time.time
        assert store.clock is None
        with store.transaction() as tx:
            row = tx.conn.execute("SELECT extract(epoch FROM now())::float8 AS db").fetchone()
            assert tx.now == row["db"]
        claim_at = store.claim(store.add("t").id, "w", lease=60).claimed_at
        with store.transaction(write=False) as tx:
            assert claim_at <= tx.now


def test_an_explicit_clock_is_used_instead_of_the_database_clock(pg_url):
    with open_store(pg_url, clock=lambda: 1_800_000_000.0) as store:
        with store.transaction() as tx:
            assert tx.now == 1_800_000_000.0
        claim = store.claim(store.add("t").id, "w", lease=60)
        assert (claim.claimed_at, claim.expires_at) == (1_800_000_000.0, 1_800_000_060.0)


# -- schema ----------------------------------------------------------------------------------
def _open_and_report(url: str, barrier: Any, results: Any) -> None:
    barrier.wait(timeout=60)
    try:
        open_store(url).close()
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_many_processes_opening_a_new_database_at_once_create_the_schema_once(pg_url):
    barrier, results = PROCS.Barrier(8), PROCS.Queue()
    procs = [
        PROCS.Process(target=_open_and_report, args=(pg_url, barrier, results)) for _ in range(8)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert outcomes == ["ok"] * 8
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [
            (str(queries.schema("postgres")[-1][0]),)
        ]


def test_database_with_someone_elses_tasks_table_is_refused_untouched(pg_url):
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE tasks (x int)")
    with pytest.raises(errors.StoreError, match="not ralph's"):
        open_store(pg_url)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('meta')").fetchone() == (None,)


def test_database_from_a_newer_ralph_is_refused(pg_url):
    open_store(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(errors.StoreError, match="newer than this ralph"):
        open_store(pg_url)


# -- passwords -------------------------------------------------------------------------------
def test_repr_and_url_show_the_password_as_stars(pg_url):
    with open_store(_with_password(pg_url)) as store:
        store.add("works with a password")
        assert PASSWORD not in repr(store) and PASSWORD not in store.url
        assert ":***@" in store.url and ":***@" in repr(store)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ralph:{PASSWORD}@127.0.0.1:1/nowhere",  # nothing listening
        f"postgresql://ralph:{PASSWORD}@[::1/broken",  # malformed: libpq quotes the whole URL
        f"postgresql://ralph@127.0.0.1:1/db?password={PASSWORD}&sslmode=disable",
        f"postgres://ralph:{PASSWORD}@127.0.0.1:1/db?no_such_option=1",
    ],
)
def test_unusable_url_is_one_store_error_line_without_the_password(url):
    with pytest.raises(errors.StoreError) as caught:
        open_store(url)
    line = caught.value.line()
    assert PASSWORD not in line and "***" in line and "\n" not in line
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_missing_database_error_names_it_without_the_password(pg_url):
    url = _with_password(pg_url.rsplit("/", 1)[0] + "/no_such_db")
    with pytest.raises(errors.StoreError, match="no_such_db") as caught:
        open_store(url)
    assert PASSWORD not in caught.value.line()


def test_cli_error_output_never_shows_the_password():
    url = f"postgresql://ralph:{PASSWORD}@127.0.0.1:1/db"
    proc = subprocess.run(
        [sys.executable, "-m", "ralph", "--db", url, "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == errors.StoreError.exit_code, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    assert "postgresql://ralph:***@127.0.0.1:1/db" in proc.stderr


def test_redact_hides_passwords_in_user_part_and_parameters():
    assert redact("postgresql://u:p@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact("postgresql://u@h/d?password=p&x=1") == "postgresql://u@h/d?password=***&x=1"
    assert redact("postgresql://h/d") == "postgresql://h/d"


# -- failures and retries --------------------------------------------------------------------
def test_killed_connections_are_replaced_and_the_operation_runs_once(pg_url):
    with open_store(pg_url) as store, psycopg.connect(pg_url, autocommit=True) as admin:
        store.add("before")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        store.add("after")
        assert [t.title for t in store.list()] == ["before", "after"]


def test_racing_unique_insert_gives_the_domain_error_not_a_database_error(pg_url):
    with open_store(pg_url) as first, open_store(pg_url) as second:
        outcomes: list[str] = []

        def add(store: PostgresStore) -> None:
            try:
                store.add("same id", id="shared")
                outcomes.append("added")
            except errors.UsageError as exc:
                outcomes.append(str(exc))

        threads = [threading.Thread(target=add, args=(s,)) for s in (first, second) * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert outcomes.count("added") == 1
        assert all("already exists" in o for o in outcomes if o != "added"), outcomes
        assert len(first.list()) == 1


def test_concurrent_block_calls_never_close_a_dependency_cycle(pg_url):
    with open_store(pg_url) as store:
        ids = [t.id for t in store.add_many([{"title": f"n{n}"} for n in range(6)])]

        def wire(seed: int) -> None:
            rng = random.Random(seed)
            with open_store(pg_url) as mine:
                for _ in range(12):
                    a, b = rng.sample(ids, 2)
                    with contextlib.suppress(errors.CycleError):
                        mine.block(a, b)

        threads = [threading.Thread(target=wire, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        waits = {t.id: set(t.blocked_by) for t in store.list()}
    done: set[str] = set()
    while len(done) < len(waits):  # a topological order exists only without cycles
        free = [i for i, blockers in waits.items() if i not in done and blockers <= done]
        assert free, f"cycle among {sorted(set(waits) - done)}"
        done.update(free)


@pytest.mark.slow  # ~31 claims per process, all 32 racing for the same next task each time
def test_thirty_two_processes_claim_and_finish_1000_tasks_exactly_once(pg_url):
    tasks, workers = 1000, 32  # bench/bench_claims.py measures the rate at scale
    with open_store(pg_url) as store:
        ids = {t.id for t in store.add_many([{"title": f"task {n}"} for n in range(tasks)])}
    procs, barrier, results = _start_workers(pg_url, workers)
    barrier.wait(timeout=120)  # every worker imported and connected: go
    started = time.monotonic()
    reports = _collect(procs, results)
    elapsed = time.monotonic() - started
    assert [r[2] for r in reports] == [[]] * workers
    assert sum(r[1] for r in reports) == tasks
    print(
        f"\n{workers} processes: {tasks / elapsed:,.0f} claims/s "
        f"({tasks} claim+done pairs in {elapsed:.2f}s)"
    )
    _assert_each_claimed_and_done_once(pg_url, ids)


@pytest.mark.slow
def test_server_crash_mid_run_loses_and_repeats_nothing(pg_server, pg_url):
    if not pg_server.owned:
        pytest.skip("the server comes from RALPH_TEST_PG: the test cannot restart it")
    tasks = 600
    with open_store(pg_url) as store:
        ids = {t.id for t in store.add_many([{"title": f"task {n}"} for n in range(tasks)])}
        procs, barrier, results = _start_workers(pg_url, 4, pause=0.005)
        barrier.wait(timeout=120)
        deadline = time.monotonic() + 60
        while store.status_counts()["done"] < tasks // 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.status_counts()["done"] < tasks, "the run ended before the crash"
        pg_server.stop("immediate")  # no checkpoint, connections cut mid-transaction
        time.sleep(0.5)
        pg_server.start()
        reports = _collect(procs, results)
    assert [r[2] for r in reports] == [[]] * 4
    assert sum(r[1] for r in reports) == tasks
    _assert_each_claimed_and_done_once(pg_url, ids)


def test_a_failing_write_sent_without_waiting_rolls_back_its_whole_transaction(pg_url):
    with open_store(pg_url) as store:
        task = store.add("pipelined")
        bad = psycopg.errors.CheckViolation
        with pytest.raises(bad), store.transaction() as tx:  # surfaces with COMMIT
            tx.run("task_set_lease", id=task.id, lease_expires=tx.now + 60)
            tx.run("task_set_status", id=task.id, status="bogus", now=tx.now, done_at=None)
        with pytest.raises(bad), store.transaction() as tx:  # surfaces with the next read
            tx.run("task_set_status", id=task.id, status="bogus", now=tx.now, done_at=None)
            tx.one("task_get", id=task.id)
        after = store.get(task.id)
        assert (after.status, after.lease_expires) == ("open", 0)
        claim = store.claim_next("w1", lease=60)  # the connections are still usable
        assert claim is not None and claim.task_id == task.id
        assert store.done(task.id, token=claim.token)[0].status == "done"
