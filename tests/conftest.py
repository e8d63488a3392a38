"""Shared pytest fixtures."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

try:  # tests/ is on sys.path (rootdir-relative conftest, no tests/__init__.py)
    from pgserver import PgServer, in_ci, start_server
except ImportError:  # tests/ is a package
    from tests.pgserver import PgServer, in_ci, start_server


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
