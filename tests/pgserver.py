"""Throwaway PostgreSQL server for the test suite.

Usage::

    server = start_server()      # None when PostgreSQL is unavailable (outside CI)
    url = server.fresh_database("t_example")
    ...
    server.stop("immediate"); server.start()   # simulate a crash, same port and data
    server.close()               # stop and delete everything

If ``RALPH_TEST_PG`` is set (a ``postgresql://`` URL) that server is used instead and
nothing is started; ``stop()``/``start()`` are then unsupported (``server.owned`` is False).

When running as root, ``initdb``/``pg_ctl`` run as the ``postgres`` system user if it
exists, otherwise as a ``ralphtest`` system user created on demand.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

__all__ = [
    "PgServer",
    "PgServerError",
    "PgUnavailable",
    "find_pg_bindir",
    "in_ci",
    "start_server",
]

ENV_URL = "RALPH_TEST_PG"
SUPERUSER = "ralph"
MAIN_DB = "ralph_test"
FALLBACK_OS_USER = "ralphtest"
_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PgServerError(RuntimeError):
    """Starting, stopping or talking to the throwaway server failed."""


class PgUnavailable(PgServerError):
    """No PostgreSQL binaries were found (raised only under CI)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in path.name.split("."))
    except ValueError:
        return (-1,)


def find_pg_bindir() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl``: PATH first, then newest Debian layout."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        for bindir in (Path(os.path.realpath(initdb)).parent, Path(initdb).parent):
            if (bindir / "pg_ctl").is_file():
                return bindir
    candidates = Path("/usr/lib/postgresql").glob("*/bin")
    for bindir in sorted(candidates, key=lambda p: _version_key(p.parent), reverse=True):
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run PostgreSQL as, or None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_OS_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    proc = subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_OS_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(FALLBACK_OS_USER)
    except KeyError:
        raise PgServerError(
            f"cannot create system user {FALLBACK_OS_USER!r} to run PostgreSQL as non-root: "
            f"{proc.stderr.strip()}"
        ) from None


def _make_traversable(path: Path) -> None:
    """Give 'other' execute permission on every ancestor of ``path`` that lacks it."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def _dbname_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


class PgServer:
    """A PostgreSQL server used by the tests: owned (started by us) or external."""

    def __init__(
        self,
        *,
        url: str,
        bindir: Path | None = None,
        tmpdir: Path | None = None,
        port: int | None = None,
        os_user: pwd.struct_passwd | None = None,
    ) -> None:
        self.url: str = url  # main database (ralph_test, or the RALPH_TEST_PG database)
        self.bindir = bindir
        self.tmpdir = tmpdir
        self.port = port
        self.os_user = os_user
        self._closed = False

    # --- construction -------------------------------------------------------------------

    @classmethod
    def external(cls, url: str) -> PgServer:
        return cls(url=url)

    @classmethod
    def launch(cls, bindir: Path) -> PgServer:
        """initdb a fresh cluster in a temp dir, start it and create ``ralph_test``."""
        os_user = _run_as_user()
        tmpdir = Path(tempfile.mkdtemp(prefix="ralph-pg-"))
        server = cls(url="", bindir=bindir, tmpdir=tmpdir, port=_free_port(), os_user=os_user)
        try:
            for sub in ("data", "sock"):
                (tmpdir / sub).mkdir(mode=0o700)
            if os_user is not None:
                _make_traversable(tmpdir)
                for path in (tmpdir, tmpdir / "data", tmpdir / "sock"):
                    os.chown(path, os_user.pw_uid, os_user.pw_gid)
            server._pg(
                "initdb",
                "-D", str(server.datadir),
                "-A", "trust",
                "-U", SUPERUSER,
                "-E", "UTF8",
                "--locale=C",
                "--no-sync",
            )  # fmt: skip
            for attempt in range(3):
                try:
                    server.start()
                    break
                except PgServerError:
                    if attempt == 2 or server._port_in_use():
                        raise
                    server.port = _free_port()  # lost a race for the port; try another
            server.url = server.url_for(MAIN_DB)
            server._admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(MAIN_DB)))
        except BaseException:
            server.close()
            raise
        atexit.register(server.close)
        return server

    # --- properties ---------------------------------------------------------------------

    @property
    def owned(self) -> bool:
        """True when this process started the server (stop/start are available)."""
        return self.tmpdir is not None

    @property
    def datadir(self) -> Path:
        return self._require_owned() / "data"

    @property
    def sockdir(self) -> Path:
        return self._require_owned() / "sock"

    @property
    def logfile(self) -> Path:
        return self._require_owned() / "postgres.log"

    @property
    def admin_url(self) -> str:
        """URL of a maintenance database to run CREATE/DROP DATABASE from."""
        if self.owned:
            return self.url_for("postgres")
        return self.url

    def url_for(self, dbname: str) -> str:
        if self.owned:
            return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"
        return _with_dbname(self.url, dbname)

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: int = 60) -> None:
        """Start the server (again) on the same data dir and port; waits until it is ready."""
        opts = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.sockdir}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                # No synchronous_commit=off: with it, commits acknowledged just before
                # stop("immediate") are lost, and crash/restart tests need them to survive.
                # With fsync=off a synchronous commit is only a write() anyway.
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._pg(
            "pg_ctl",
            "-D", str(self.datadir),
            "-l", str(self.logfile),
            "-w", "-t", str(timeout),
            "-o", opts,
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "immediate", timeout: int = 60) -> None:
        """Stop the server: mode is 'smart', 'fast' or 'immediate' (a crash, no checkpoint)."""
        if mode not in {"smart", "fast", "immediate"}:
            raise ValueError(f"bad pg_ctl stop mode: {mode!r}")
        self._pg("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", str(timeout), "stop")

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        if not self.owned:
            return True
        proc = self._pg("pg_ctl", "-D", str(self.datadir), "status", check=False)
        return proc.returncode == 0

    def close(self) -> None:
        """Stop the server (if owned and running) and remove its temp dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.tmpdir is None:
            return
        if (self.datadir / "postmaster.pid").exists():
            with contextlib.suppress(PgServerError, OSError):
                self.stop("immediate")
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- databases ----------------------------------------------------------------------

    def fresh_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """CREATE DATABASE ``name`` (default: a random ``t_...`` name) and return its URL.

        ``template`` clones an existing database (it must have no open connections).
        """
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not _IDENT_RE.match(name):
            raise ValueError(f"database name must match {_IDENT_RE.pattern}: {name!r}")
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        self._admin_execute(query)
        return self.url_for(name)

    def drop_database(self, name_or_url: str) -> None:
        """DROP DATABASE IF EXISTS, terminating any sessions still connected to it."""
        name = _dbname_of(name_or_url) if "://" in name_or_url else name_or_url
        self._admin_execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    # --- internals ----------------------------------------------------------------------

    def _require_owned(self) -> Path:
        if self.tmpdir is None:
            raise PgServerError(f"server comes from ${ENV_URL}; it is not controlled by the tests")
        return self.tmpdir

    def _admin_execute(self, query: sql.Composable) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(query)

    def _port_in_use(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", int(self.port or 0))) == 0

    def _pg(self, prog: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None and self.tmpdir is not None
        cmd = [str(self.bindir / prog), *args]
        if self.os_user is not None:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", self.os_user.pw_name, "--", *cmd]
            else:
                cmd = [
                    "setpriv",
                    f"--reuid={self.os_user.pw_uid}",
                    f"--regid={self.os_user.pw_gid}",
                    "--init-groups",
                    "--",
                    *cmd,
                ]
        env = {**os.environ, "LC_ALL": "C"}
        for var in ("PGDATA", "PGPORT", "PGHOST", "PGUSER", "PGDATABASE"):
            env.pop(var, None)
        started = time.monotonic()
        proc = subprocess.run(
            cmd,
            cwd=self.tmpdir,  # the unprivileged user may not be able to read the caller's cwd
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            log = ""
            with contextlib.suppress(OSError):
                log = self.logfile.read_text(errors="replace")[-3000:]
            raise PgServerError(
                f"{' '.join(cmd)} failed (exit {proc.returncode}, "
                f"{time.monotonic() - started:.1f}s):\n{proc.stdout}{proc.stderr}"
                + (f"\n--- server log tail ---\n{log}" if log else "")
            )
        return proc


def start_server() -> PgServer | None:
    """Return a server for the test session.

    ``$RALPH_TEST_PG`` wins; otherwise a throwaway cluster is started. When no PostgreSQL
    binaries are found: raise :class:`PgUnavailable` under CI (tests must fail), else None.
    """
    external = os.environ.get(ENV_URL, "").strip()
    if external:
        return PgServer.external(external)
    bindir = find_pg_bindir()
    if bindir is None:
        if in_ci():
            raise PgUnavailable(
                "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or under "
                f"/usr/lib/postgresql/*/bin, and ${ENV_URL} is not set; CI requires PostgreSQL"
            )
        return None
    return PgServer.launch(bindir)
