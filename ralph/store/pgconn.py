"""Connection parameters that keep one cut-off host from holding the others hostage.

A host whose link drops silently mid-transaction leaves its session open on the server with
its row locks; every other worker's claim or expiry query then waits on those locks for as
long as the server believes the session alive. So every ralph connection carries:

- server-side limits (libpq `options`, no extra round trip): `idle_in_transaction_session_timeout`
  ends a session whose client stopped talking mid-transaction (its locks go with it),
  `lock_timeout` turns a wait on someone's lock into an error the store retries, and
  `statement_timeout` bounds any single statement;
- client-side TCP keepalives and `tcp_user_timeout`, so this host notices a dead link within
  seconds instead of blocking on the socket for the kernel's ~15 minutes.

Every value is well under the lease: a lock held by a cut host is released within about
IDLE_IN_TX seconds, long before its lease runs out and the others take its tasks back.
A parameter the URL sets itself is left as the user wrote it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

CONNECT_TIMEOUT = 10
LOCK_WAIT = 2.0  # seconds a statement may wait on another session's lock before retrying
IDLE_IN_TX = 2.0  # seconds a session may sit inside a transaction without a statement
STATEMENT = 30.0  # seconds any one statement may run (the longest is a migration's)
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 2, 1, 3  # a dead link is seen in ~5 s
USER_TIMEOUT = 5.0  # seconds sent data may stay unacknowledged before the socket fails
DEFAULT_LEASE = 1800.0
# A schema migration waits on the migration lock while another process migrates, and may
# rewrite big tables: it runs without the limits, which RESET restores (to the connection's).
UNLIMITED = "SET lock_timeout = 0; SET statement_timeout = 0"
LIMITED = "RESET lock_timeout; RESET statement_timeout"


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def server_limits(lease: float = DEFAULT_LEASE) -> dict[str, int]:
    """The session settings (milliseconds) for a lease of `lease` seconds: each at most a
    quarter of the lease, so a short test lease still outlasts them."""
    quarter = max(0.5, lease / 4)
    return {
        "lock_timeout": _ms(min(LOCK_WAIT, quarter)),
        "idle_in_transaction_session_timeout": _ms(min(IDLE_IN_TX, quarter)),
        "statement_timeout": _ms(max(min(STATEMENT, lease / 2), 5.0)),
    }


def _options(given: str | None, limits: Mapping[str, int]) -> str:
    """libpq `options`: ours as `-c name=value`, except the settings the user's string sets."""
    theirs = shlex.split(given or "")
    named = {
        (w[2:] if w.startswith("-c") else w.lstrip("-")).split("=", 1)[0].replace("-", "_")
        for w in theirs
    }
    ours = [f"-c {name}={value}" for name, value in limits.items() if name not in named]
    return " ".join([*ours, *([given] if given else [])])


def connect_kwargs(given: Mapping[str, Any], lease: float = DEFAULT_LEASE) -> dict[str, Any]:
    """libpq parameters to add to a connection whose URL already says `given`
    (psycopg.conninfo.conninfo_to_dict of it): only those it does not set itself."""
    wanted: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": "ralph",
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE,
        "keepalives_interval": KEEPALIVE_INTERVAL,
        "keepalives_count": KEEPALIVE_COUNT,
        "tcp_user_timeout": _ms(min(USER_TIMEOUT, max(1.0, lease / 3))),
    }
    found = {k: v for k, v in wanted.items() if k not in given}
    options = _options(given.get("options"), server_limits(lease))
    if options != (given.get("options") or ""):
        found["options"] = options
    return found
