"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The suite starts ralph as a subprocess hundreds of times. Where the environment forbids
# bytecode caches, every start would compile ralph's modules again; let the children write them.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# Agents run unsandboxed unless a test turns the sandbox on (tests/test_sandbox*.py, and the
# README's golden path, which runs with the default): existing tests keep their behaviour.
os.environ.setdefault("RALPH_SANDBOX", "off")

# A shell without job control starts a background job (`python -m pytest ... &`, a CI script)
# with SIGINT ignored, and an ignored signal stays ignored across exec: every `ralph` the tests
# start would then shrug off the Ctrl-C a test sends it (`status --watch` waited 30 s and
# failed). Children of a process with a Python handler get the default action instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

try:  # tests/ is on sys.path (rootdir-relative conftest, no tests/__init__.py)
    from pgserver import PgServer, in_ci, start_server
    from support.fake_github import FakeGitHub
except ImportError:  # tests/ is a package
    from tests.pgserver import PgServer, in_ci, start_server
    from tests.support.fake_github import FakeGitHub
from tests.support import forked  # noqa: E402 - after the environment is set

# `python -m ralph ...` started through subprocess forks from a Python that imported ralph once
# (tests/support/forked.py): ~150 ms of CPU less for each of ~500 processes.
forked.install()


# ======================================================================================
# PostgreSQL fixtures (tests/pgserver.py): a throwaway server per test session.
#   pg_server -- session-scoped PgServer; skipped when PostgreSQL is unavailable outside
#                CI, an error under CI=true. $RALPH_TEST_PG points at an existing server.
#   pg_url    -- postgresql:// URL of a fresh, empty database per test (dropped after).
# ======================================================================================


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_server()  # raises under CI when PostgreSQL is missing
    if server is None:
        assert not in_ci()
        pytest.skip(
            "PostgreSQL not available: no initdb/pg_ctl on PATH or under "
            "/usr/lib/postgresql/*/bin and RALPH_TEST_PG is unset"
        )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    slug = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")[:30]
    url = pg_server.fresh_database(f"t_{slug}_{uuid.uuid4().hex[:10]}")
    try:
        yield url
    finally:
        if not pg_server.owned or pg_server.is_running():
            pg_server.drop_database(url)


# ======================================================================================
# end of PostgreSQL fixtures
# ======================================================================================


# ======================================================================================
# Store fixtures (tests/storefactory.py): the contract suite runs once per backend.
#   clock      -- a settable Clock (storefactory.Clock) the stores read for `now`
#   store_backend -- "sqlite" or "postgres" (parametrized; postgres skips until
#                 ralph/store/postgres.py exists, and fails instead under CI=true)
#   store_url  -- a fresh SQLite file, or the session's PostgreSQL store database emptied
#                 (every table but meta truncated, identities restarted) for this test
#   make_store -- make_store(clock=...) opens another Store on the same database (another
#                 "process"); every store it opened is closed after the test
#   store      -- the first Store on it, reading time from `clock`
# ======================================================================================

try:
    import storefactory
except ImportError:
    from tests import storefactory


@pytest.fixture
def clock() -> storefactory.Clock:
    return storefactory.Clock()


@pytest.fixture(params=storefactory.BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    storefactory.require_backend(request.param)
    return request.param


@pytest.fixture(scope="session")
def store_pg_database(pg_server: PgServer) -> Iterator[str]:
    url = pg_server.fresh_database(f"t_store_{uuid.uuid4().hex[:10]}")
    yield url
    if not pg_server.owned or pg_server.is_running():
        pg_server.drop_database(url)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, store_backend: str, tmp_path) -> str:
    if store_backend == "postgres":  # one database per session, emptied for every test
        url = request.getfixturevalue("store_pg_database")
        storefactory.empty_postgres(url)
        return url
    return str(tmp_path / "ralph.db")


@pytest.fixture
def make_store(store_backend: str, store_url: str, clock: storefactory.Clock):
    opened = []

    def make(clock: storefactory.Clock | None = clock):
        store = storefactory.open_backend(store_backend, store_url, clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()


# ======================================================================================
# end of store fixtures
# ======================================================================================


# ======================================================================================
# Order: the suite runs under pytest-xdist (pyproject's addopts). Tests marked `slow` go first,
# so the longest ones start at once on their own workers instead of being the run's tail.
# ======================================================================================


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: else as is


# Modules whose tests build on each other's state (a module-scoped fixture they change in
# turn) run in order on one worker. pytest-xdist's own `xdist_group` marker does not work
# with pytest 9 (xdist 3.8 tags the group onto `item._nodeid`, which pytest 9 no longer
# reads), so the scheduler is told here, by node id.
TOGETHER = ("tests/test_readme.py::",)
if os.environ.get("RALPH_CONFORMANCE_REPORT"):  # one worker's module fixture writes it all
    TOGETHER += ("tests/test_conformance.py::",)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getvalue("dist") != "loadgroup":  # another --dist asked for on the command line
        return None
    from xdist.scheduler import LoadGroupScheduling

    class Together(LoadGroupScheduling):
        """Every test is its own work unit, except that the TOGETHER modules are one each."""

        def _split_scope(self, nodeid: str) -> str:
            for prefix in TOGETHER:
                if nodeid.startswith(prefix):
                    return prefix
            return super()._split_scope(nodeid)

    return Together(config, log)


# ======================================================================================
# Leftover processes: a test that fails between starting `ralph run` and stopping it can
# orphan an agent (agents run in their own process group). At the end of the session, kill
# every process still running from this session's temp folder, so nothing outlives the suite.
# Under pytest-xdist each worker has its own folder (.../popen-gwN) and kills only its own.
# ======================================================================================


def _processes_under(folder: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if folder in cmdline or cwd.startswith(folder) or cwd == folder.rstrip("/"):
            found.append(int(entry))
    return found


@pytest.fixture(scope="session", autouse=True)
def _kill_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if not os.path.isdir("/proc"):
        return
    for pid in _processes_under(os.path.join(tmp_path_factory.getbasetemp(), "")):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def github(tmp_path: Path) -> Iterator[FakeGitHub]:
    """A scripted GitHub for one test (tests/support/fake_github.py); it fails the test when
    gh sent an operation it does not know."""
    server = FakeGitHub(tmp_path)
    yield server
    server.close()
    assert server.unknown == [], f"gh sent operations the fake does not know: {server.unknown}"
