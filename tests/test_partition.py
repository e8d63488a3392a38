"""Network partitions between one host and PostgreSQL (issue 25).

A host is a store (or a `ralph run`) whose connections go through tests/support/tcpproxy.py;
the test drops that link silently at a chosen point: inside a transaction that holds row
locks (right after a BEGIN reached the server), or at once. The contract: the others are
never blocked on the cut host's locks for more than 3 s, the cut host gives its lease up
before it ends, and no agent is launched on a claim its worker no longer holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ralph import errors, hostid
from ralph.lease import LeaseRenewer
from ralph.runner import check_names_free
from ralph.store import open_store, pgconn

sys.path.insert(0, str(Path(__file__).parent))
import partition  # noqa: E402
from chaos import RALPH, agent_cmd, chaos_env, git, make_repo  # noqa: E402
from support.netns import NetNs  # noqa: E402
from support.tcpproxy import Proxy  # noqa: E402

BLOCKED_MAX = 3.0  # the issue's bound on the others' wait behind a cut host's locks
LOAD_MARGIN = 1.5  # a loaded CI machine's scheduling delay on top of it


@pytest.fixture
def proxy(pg_server) -> Proxy:
    port = int(pg_server.url.rsplit(":", 1)[1].split("/", 1)[0])
    proxy = Proxy("127.0.0.1", port)
    yield proxy
    proxy.close()


def _in_thread(fn, *args, **kwargs):
    """Run fn in a daemon thread; returns (thread, box) where box gets 'value'/'error'/'at'."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc
        box["at"] = time.time()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_every_connection_carries_lock_and_idle_limits_and_keepalives(pg_url: str) -> None:
    with open_store(pg_url) as store, store.transaction(write=False) as tx:
        conn = tx.conn
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[name]  # noqa: S608 - fixed names
            for name in ("lock_timeout", "idle_in_transaction_session_timeout")
        }
        params = conn.info.get_parameters()
        dsn = conn.info.dsn
    assert shown == {"lock_timeout": "2s", "idle_in_transaction_session_timeout": "2s"}
    assert "keepalives_idle" in dsn and "tcp_user_timeout" in dsn
    assert params.get("application_name") == "ralph"


def test_a_setting_the_url_makes_itself_is_left_as_the_user_wrote_it(pg_url: str) -> None:
    url = f"{pg_url}?options=-c%20lock_timeout%3D7s&keepalives_idle=9"
    with open_store(url) as store, store.transaction(write=False) as tx:
        lock = tx.conn.execute("SHOW lock_timeout").fetchone()["lock_timeout"]
        idle = tx.conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
        dsn = tx.conn.info.dsn
    assert lock == "7s" and idle["idle_in_transaction_session_timeout"] == "2s"
    assert "keepalives_idle=9" in dsn


def test_short_leases_get_limits_well_under_the_lease() -> None:
    limits = pgconn.server_limits(lease=2.0)
    assert limits["lock_timeout"] <= 500 and limits["idle_in_transaction_session_timeout"] <= 500


def test_a_host_cut_inside_a_transaction_blocks_the_others_for_at_most_three_seconds(
    pg_url: str, proxy: Proxy
) -> None:
    with open_store(pg_url) as other:
        other.add("shared task", id="t1")
        claim = other.claim("t1", "cut-host", lease=60)
    cut = open_store(proxy.url(pg_url))
    try:
        proxy.cut_in_transaction()  # the renewal's: its first query has locked t1's rows
        renewing, _ = _in_thread(cut.renew, "t1", "cut-host", claim.token)
        assert proxy.cut.wait(60), "the renewal never reached the server"
        with open_store(pg_url) as other:
            # The other host takes the task back: its transaction needs the rows the cut
            # host's open transaction locked.
            taking, box = _in_thread(other.expire, claim.token, force=True)
            taking.join(30 + BLOCKED_MAX)
            if taking.is_alive():
                proxy.restore()  # let it finish so the test ends; it failed anyway
                taking.join(60)
            assert "error" not in box, box.get("error")
            blocked = box["at"] - proxy.cut_at
            print(f"blocked behind the cut host's locks: {blocked:.2f} s")
            assert blocked <= BLOCKED_MAX + LOAD_MARGIN, f"blocked {blocked:.1f} s"
            assert other.active_claim("t1") is None
            (expired,) = other.events(kind="expired", task_id="t1")
            assert expired.token == claim.token
        proxy.restore()
        renewing.join(120)
        assert not renewing.is_alive()
    finally:
        proxy.restore()
        cut.close()


def test_a_cut_off_renewer_gives_the_lease_up_before_it_ends(pg_url: str, proxy: Proxy) -> None:
    with open_store(pg_url) as other:
        other.add("shared task", id="t1")
    cut = open_store(proxy.url(pg_url))
    lost = threading.Event()
    lost_at: list[float] = []

    def on_lost(why: str) -> None:
        lost_at.append(time.time())
        lost.set()

    try:
        claim = cut.claim("t1", "cut-host", lease=6)
        with LeaseRenewer(cut, claim, on_lost=on_lost) as lease:
            proxy.cut_in_transaction()  # the next renewal hangs inside its transaction
            assert proxy.cut.wait(60), "no renewal reached the server"
            assert lost.wait(60), "the renewer never gave the lease up"
            with open_store(pg_url) as other:  # the last expiry the store granted
                (granted,) = [c for c in other.claims() if c.task_id == "t1"]
            assert lost_at[0] < granted.expires_at, (lost_at[0], granted.expires_at)
            assert "in time" in (lease.lost or "")
    finally:
        proxy.restore()
        cut.close()


# The first git command after t1 is claimed (preparing the workspace, before the launch) is
# the moment another host takes the task: the claim is expired behind this worker's back.
EXPIRE_WRAPPER = """#!/bin/sh
if [ ! -e "$EXPIRE_DONE" ]; then
    {python} -c 'import os
from ralph.store import open_store
s = open_store(os.environ["RALPH_DB"])
c = s.active_claim("t1")
if c is not None:
    s.expire(c.token, force=True)
    open(os.environ["EXPIRE_DONE"], "w").write(str(c.token))'
fi
exec {real} "$@"
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_no_agent_is_launched_on_a_claim_lost_before_the_launch(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = str(tmp_path / "ralph.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    repo = make_repo(tmp_path / "repo")
    with open_store(db) as store:
        store.add("only task", id="t1")
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    (wrappers / "git").write_text(EXPIRE_WRAPPER.format(real=real, python=sys.executable))
    (wrappers / "git").chmod(0o755)
    env = chaos_env(tmp_path, db, CHAOS_MIN="0", CHAOS_MAX="0")
    env["PATH"] = f"{wrappers}:{env['PATH']}"
    env["EXPIRE_DONE"] = str(tmp_path / "expired")
    run = subprocess.run(
        [*RALPH, "run", "--lease", "30s", "--agent-cmd", agent_cmd()],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    first_token = int((tmp_path / "expired").read_text())
    assert "not launched: the claim on t1" in run.stdout + run.stderr
    launches = (tmp_path / "launches.txt").read_text().splitlines()
    assert [line.split()[0] for line in launches] == ["t1"]  # once, on the second claim
    with open_store(db) as store:
        first, second = store.attempts("t1")
        assert (first.token, first.outcome) == (first_token, "lease_lost")
        assert first.summary.startswith("not launched") and second.token != first_token
        assert store.get("t1").status == "done"
    assert git(repo, "log", "--format=%s", "-1")  # the task's one commit


def test_default_names_differ_between_checkouts_on_one_hostname_and_stay_on_restart(
    tmp_path: Path,
) -> None:
    one, two = tmp_path / "host1", tmp_path / "host2"
    first = hostid.host_names(["worker-1", "worker-2"], one)
    assert first == hostid.host_names(["worker-1", "worker-2"], one)  # a restart: same names
    assert set(first).isdisjoint(hostid.host_names(["worker-1", "worker-2"], two))
    assert first[0].startswith(f"{os.uname().nodename}-") and first[0].endswith("-worker-1")


# -- three hosts, two workers each, one PostgreSQL and one git remote -----------------------

LEASE = 10.0
RECLAIM_MAX = LEASE + 6  # the bound on the others taking the cut host's tasks back


def _print(result) -> None:  # noqa: ANN001
    reclaim = max(result.reclaim_s.values(), default=0.0)
    print(
        f"partition[{result.mode}]: held {result.held_at_cut}, reclaimed in "
        f"{reclaim:.1f} s, others blocked {result.blocked_s or 0:.2f} s, agents stopped "
        f"{[round(s, 1) for s in result.stop_late_s]} s after the lease end, "
        f"{result.launches_per_task:.2f} launches per task, {result.wall_s:.0f} s"
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["in_tx", "at_once"])
def test_three_hosts_survive_one_host_cut_off_mid_work(
    mode: str, tmp_path: Path, pg_server, pg_url: str
) -> None:
    cluster = partition.Cluster(tmp_path, pg_server, pg_url, lease=LEASE)
    result = cluster.run(mode)
    _print(result)
    assert result.held_at_cut and set(result.reclaim_s) == set(result.held_at_cut)
    assert max(result.reclaim_s.values()) <= RECLAIM_MAX, result.reclaim_s
    assert result.blocked_s is not None and result.blocked_s <= BLOCKED_MAX + LOAD_MARGIN
    # Every agent the cut host was running stopped (SIGTERM) before its lease ended.
    assert len(result.stop_late_s) >= len(result.held_at_cut), result.stop_late_s
    assert max(result.stop_late_s) < 0, result.stop_late_s
    assert result.lost_launches == []
    assert set(result.commits.values()) == {1}  # every task once, one commit each


@pytest.mark.slow
def test_three_hosts_lose_nothing_when_postgresql_restarts_mid_run(
    tmp_path: Path, pg_server, pg_url: str
) -> None:
    if not pg_server.owned:
        pytest.skip("the server comes from $RALPH_TEST_PG: the tests cannot restart it")
    cluster = partition.Cluster(tmp_path, pg_server, pg_url, lease=LEASE)
    result = cluster.run("pg_restart")
    _print(result)
    assert result.lost_launches == []
    assert set(result.commits.values()) == {1}


def test_a_live_worker_on_another_host_with_the_same_hostname_keeps_its_name(
    tmp_path: Path,
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    # A process in another network namespace (a "host" of the issue) has the same hostname
    # but another host identity.
    probe = "from ralph import hostid; print(hostid.HOST)"
    other = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", probe], capture_output=True, text=True
    )
    if other.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {other.stderr.strip()}")
    twin = other.stdout.strip()
    assert twin.startswith(f"{os.uname().nodename} (") and twin != hostid.HOST
    with open_store(tmp_path / "ralph.db") as store:
        # Its pid means nothing here: it must not be judged dead by this host's process table.
        store.register_worker("Alpha", pid=int(gone), host=twin)
        with pytest.raises(errors.UsageError, match="Alpha is already running"):
            check_names_free(store, ["Alpha"])
        store.register_worker("Beta", pid=int(gone), host=hostid.HOST)  # a crashed run here
        check_names_free(store, ["Beta"])


# -- a real network namespace: only TCP itself can tell the host its link is dead -----------

SILENT_LINK_CLIENT = """
import sys, time
from ralph.store import open_store
store = open_store(sys.argv[1])
store.get("t1")  # a connection, open and idle in the store's pool
print("ready", flush=True)
sys.stdin.readline()  # the link is cut now
started = time.time()
try:
    with store.transaction(write=False) as tx:
        tx.one("task_get", id="t1")
    print("answered", time.time() - started, flush=True)
except Exception as exc:
    print("failed", time.time() - started, type(exc).__name__, flush=True)
"""


def test_a_host_in_a_network_namespace_notices_a_silently_dead_link_within_seconds(
    pg_server, pg_url: str
) -> None:
    why = NetNs.available()
    if why:
        pytest.skip(why)
    with open_store(pg_url) as store:
        store.add("t", id="t1")
    port = int(pg_server.url.rsplit(":", 1)[1].split("/", 1)[0])
    with NetNs() as ns:
        proxy = Proxy("127.0.0.1", port, listen=ns.outer_ip)  # the way out of the namespace
        try:
            host = subprocess.Popen(
                ns.argv([sys.executable, "-c", SILENT_LINK_CLIENT, proxy.url(pg_url)]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert host.stdout.readline().strip() == "ready"
                ns.cut()
                out, _ = host.communicate("go\n", timeout=120)
            finally:
                host.kill()
                host.wait()
        finally:
            proxy.close()
    verdict, seconds, *what = out.split()
    print(f"a dead link noticed after {float(seconds):.1f} s ({what})")
    assert verdict == "failed" and float(seconds) <= pgconn.USER_TIMEOUT + LOAD_MARGIN + 3


def test_a_store_waiting_past_the_lock_timeout_for_another_process_migration_still_opens(
    pg_url: str,
) -> None:
    import psycopg

    from ralph.store.postgres import LOCK_NAMESPACE

    with psycopg.connect(pg_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, 1)", (LOCK_NAMESPACE,))  # "migrating"
        opening, box = _in_thread(open_store, pg_url)
        waited = 0.0
        while waited <= 2 * pgconn.LOCK_WAIT and opening.is_alive():  # the server's own clock
            row = holder.execute(
                "SELECT extract(epoch FROM now() - query_start) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%%pg_advisory_lock%%' "
                "AND pid <> pg_backend_pid()"
            ).fetchone()
            waited = float(row[0]) if row else 0.0
        holder.execute("SELECT pg_advisory_unlock(%s, 1)", (LOCK_NAMESPACE,))
    opening.join(60)
    assert "error" not in box, box.get("error")
    store = box["value"]
    with store.transaction(write=False) as tx:  # its pooled connection has its limits back
        assert tx.conn.execute("SHOW lock_timeout").fetchone()["lock_timeout"] == "2s"
    store.close()
