"""Multi-host partition harness: hosts as `ralph run` processes, each in its own clone of one
git remote, each reaching PostgreSQL through its own TCP proxy (tests/support/tcpproxy.py),
so one host's link can be dropped silently at a chosen point; or PostgreSQL restarted.

What a round measures, from timestamps the processes recorded (the store's claims, attempts
and events, the proxy's cut time, the agents' stop times):
- reclaim_s: from the cut to another host's claim on each task the cut host held;
- blocked_s: from the cut until the rows the cut host held could be locked by anyone;
- stop_late_s: how long after its lease's end each of the cut host's agents stopped (<= 0);
- lost_launches: attempts started on a claim the worker no longer held (must be 0);
- launches per task, duplicates (commits per task beyond one) and lost tasks.

Used by tests/test_partition.py and bench/bench_partition.py.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from chaos import CONFIG, RALPH, agent_cmd, chaos_env, check_history, git, make_repo
from support.tcpproxy import Proxy

from ralph import hostid
from ralph.store import open_store


@dataclass
class Host:
    name: str
    repo: Path
    proxy: Proxy
    workers: list[str]
    proc: subprocess.Popen | None = None


@dataclass
class Round:
    """What one round measured."""

    mode: str
    tasks: int
    wall_s: float = 0.0
    held_at_cut: list[str] = field(default_factory=list)
    reclaim_s: dict[str, float] = field(default_factory=dict)
    blocked_s: float | None = None
    stop_late_s: list[float] = field(default_factory=list)
    lost_launches: list[str] = field(default_factory=list)
    launches: collections.Counter[str] = field(default_factory=collections.Counter)
    commits: dict[str, int] = field(default_factory=dict)

    @property
    def launches_per_task(self) -> float:
        return sum(self.launches.values()) / self.tasks


class Cluster:
    """`hosts` hosts with `workers` workers each, draining `tasks` tasks from one PostgreSQL."""

    def __init__(
        self,
        base: Path,
        pg_server,  # tests/pgserver.PgServer  # noqa: ANN001
        pg_url: str,
        *,
        hosts: int = 3,
        workers: int = 2,
        lease: float = 10.0,
        tasks: int = 30,
        work: tuple[float, float] = (0.2, 1.0),
        slow_host_work: float = 20.0,
    ):
        self.base, self.pg_server, self.url = base, pg_server, pg_url
        self.lease, self.ntasks, self.work, self.slow = lease, tasks, work, slow_host_work
        port = int(pg_url.rsplit(":", 1)[1].split("/", 1)[0])
        origin = make_repo(base / "seed")
        (origin / "ralph.toml").write_text(CONFIG)
        git(origin, "add", "ralph.toml")
        git(origin, "commit", "-q", "-m", "config")
        self.since = git(origin, "rev-parse", "HEAD")
        self.remote = base / "remote.git"
        git(base, "clone", "-q", "--bare", str(origin), str(self.remote))
        self.hosts: list[Host] = []
        for n in range(1, hosts + 1):
            repo = base / f"host{n}"
            git(base, "clone", "-q", str(self.remote), str(repo))
            git(repo, "config", "user.name", "Test")
            git(repo, "config", "user.email", "test@example.invalid")
            names = hostid.host_names([f"worker-{i}" for i in range(1, workers + 1)], repo)
            self.hosts.append(Host(f"host{n}", repo, Proxy("127.0.0.1", port), names))
        with open_store(pg_url) as store:
            store.add_many([{"id": f"p{n:02d}", "title": f"task {n}"} for n in range(tasks)])

    # -- processes ---------------------------------------------------------------------------
    def start(self, host: Host, slow: bool = False) -> None:
        """`ralph run --workers N --lease L --remote origin` in the host's clone; a slow host's
        agents work `slow_host_work` seconds, so they are still running when its link drops."""
        low, high = (self.slow, self.slow) if slow else self.work
        env = chaos_env(
            self.base,
            host.proxy.url(self.url),
            CHAOS_MIN=str(low),
            CHAOS_MAX=str(high),
            CHAOS_STOPS=str(self.base / "stops.txt"),
        )
        args = ["run", "--workers", str(len(host.workers)), "--lease", f"{self.lease:g}s"]
        args += ["--remote", "origin", "--watch", "--no-live", "--agent-cmd", agent_cmd()]
        log = open(self.base / f"{host.name}.log", "a")  # noqa: SIM115
        host.proc = subprocess.Popen(
            [*RALPH, *args],
            cwd=host.repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        for host in self.hosts:
            if host.proc is not None and host.proc.poll() is None:
                host.proc.send_signal(signal.SIGTERM)
        for host in self.hosts:
            if host.proc is not None:
                try:
                    host.proc.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        host.proc.kill()
            host.proxy.close()

    # -- store views -------------------------------------------------------------------------
    def _rows(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def done(self) -> int:
        return self._rows("SELECT count(*) FROM tasks WHERE status = 'done'")[0][0]

    def live_claims(self, host: Host) -> list[str]:
        rows = self._rows(
            "SELECT task_id FROM claims WHERE state = 'live' AND worker = ANY(%s)", host.workers
        )
        return [r[0] for r in rows]

    def _working(self, host: Host) -> list[str]:
        """The tasks the host holds whose agent is running (it logged its launch)."""
        launches = self.base / "launches.txt"
        started = (
            {ln.split()[0] for ln in launches.read_text().splitlines()}
            if launches.exists()
            else set()
        )
        return [t for t in self.live_claims(host) if t in started]

    def wait(self, check, what: str, timeout: float) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; logs in {self.base}")
            for host in self.hosts:
                if host.proc is not None and host.proc.poll() is not None:
                    raise AssertionError(f"{host.name} exited; see {self.base / host.name}.log")
            time.sleep(0.05)

    def probe_locks(self, host: Host, out: dict) -> threading.Thread:
        """From now, wait (no lock timeout) until the rows the host's workers hold can be
        locked: the longest anyone could have been blocked behind them."""

        def run() -> None:
            started = time.time()
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                conn.execute("SET lock_timeout = 0")
                with conn.transaction():
                    conn.execute(
                        "SELECT 1 FROM workers WHERE name = ANY(%s) FOR UPDATE", (host.workers,)
                    )
                    conn.execute(
                        "SELECT 1 FROM tasks t JOIN claims c ON c.task_id = t.id "
                        "WHERE c.worker = ANY(%s) FOR UPDATE",
                        (host.workers,),
                    )
            out["free_at"], out["started"] = time.time(), started

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    # -- a round -----------------------------------------------------------------------------
    def run(self, mode: str, deadline_s: float = 240.0, partition_s: float = 0.0) -> Round:
        """mode: 'at_once' (the link drops while the host's agents work), 'in_tx' (it drops
        inside the host's next transaction after its first read), 'pg_restart' (PostgreSQL
        is killed and started again mid-run). The link comes back once the others took the
        cut host's tasks, and not before `partition_s` seconds."""
        result = Round(mode, self.ntasks)
        started = time.monotonic()
        cut_host = self.hosts[0]
        try:
            self.start(cut_host, slow=mode != "pg_restart")
            for host in self.hosts[1:]:
                self.start(host)
            if mode == "pg_restart":
                self.wait(lambda: self.done() >= self.ntasks // 3, "a third done", deadline_s)
                self.pg_server.restart("immediate")
            else:
                want = len(cut_host.workers)
                self.wait(lambda: len(self._working(cut_host)) >= want, "the cut host's agents", 60)
                result.held_at_cut = self._working(cut_host)
                if mode == "in_tx":
                    cut_host.proxy.cut_in_transaction()
                else:
                    cut_host.proxy.cut_now()
                assert cut_host.proxy.cut.wait(60), "the cut never happened"
                probe: dict = {}
                self.probe_locks(cut_host, probe).join(60)
                result.blocked_s = probe["free_at"] - cut_host.proxy.cut_at
                # The link is back once the others took every task the cut host held.
                self.wait(
                    lambda: not self._untaken(result.held_at_cut),
                    "the others to take the cut host's tasks",
                    self.lease + 60,
                )
                while time.time() < cut_host.proxy.cut_at + partition_s:  # a set length
                    time.sleep(0.1)
                cut_host.proxy.restore()
            self.wait(lambda: self.done() >= self.ntasks, "every task done", deadline_s)
        finally:
            self.stop()
        result.wall_s = time.monotonic() - started
        self._measure(result, cut_host)
        return result

    def _untaken(self, tasks: list[str]) -> list[str]:
        """Those of `tasks` no other host has claimed since the cut."""
        cut = self.hosts[0]
        taken = {
            r[0]
            for r in self._rows(
                "SELECT task_id FROM claims WHERE claimed_at > %s AND NOT worker = ANY(%s)",
                cut.proxy.cut_at,
                cut.workers,
            )
        }
        return [t for t in tasks if t not in taken]

    def _measure(self, result: Round, cut_host: Host) -> None:
        claims = {
            r[0]: r
            for r in self._rows(
                "SELECT id, task_id, worker, claimed_at, expires_at, state, ended_at FROM claims"
            )
        }
        cut_at = cut_host.proxy.cut_at
        if cut_at is not None:
            for task in result.held_at_cut:
                later = [
                    c[3]
                    for c in claims.values()
                    if c[1] == task and c[3] > cut_at and c[2] not in cut_host.workers
                ]
                if later:
                    result.reclaim_s[task] = min(later) - cut_at
            ends = {  # the lease end of the cut host's claims on each task held at the cut
                c[1]: c[4]
                for c in claims.values()
                if c[2] in cut_host.workers and c[1] in result.held_at_cut and c[3] <= cut_at
            }
            stops = self.base / "stops.txt"
            for line in stops.read_text().splitlines() if stops.exists() else []:
                task, _pid, at = line.split()
                if task in ends:
                    result.stop_late_s.append(float(at) - ends[task])
        with open_store(self.url) as store:
            for attempt in store.attempts():
                claim = claims.get(attempt.token or -1)
                held = claim is not None and claim[2] == attempt.worker
                ended = claim[6] if held and claim[6] is not None else float("inf")
                if (attempt.summary or "").startswith("not launched"):
                    continue  # the check before the launch caught it
                if not held or attempt.started_at > min(claim[4], ended):
                    result.lost_launches.append(
                        f"{attempt.task_id}/{attempt.attempt} by {attempt.worker} at "
                        f"{attempt.started_at:.3f} on {claim}"
                    )
        launches = self.base / "launches.txt"
        for line in launches.read_text().splitlines() if launches.exists() else []:
            result.launches[line.split()[0]] += 1
        check = self.base / "check"
        git(self.base, "clone", "-q", str(self.remote), str(check))
        git(check, "fetch", "-q", "origin", "+refs/ralph/tasks/*:refs/ralph/tasks/*")
        result.commits = check_history(
            check, [f"p{n:02d}" for n in range(self.ntasks)], None, self.since
        )
