"""Workers: registration, heartbeats, stop requests."""

from __future__ import annotations

import os
from collections.abc import Iterable

from ralph import errors
from ralph.models import Claim, Worker
from ralph.store.core import StoreCore, _dump, _strings, retried


class WorkerStore(StoreCore):
    """Workers."""

    @retried
    def register_worker(
        self,
        name: str,
        *,
        capabilities: Iterable[str] = (),
        pid: int | None = None,
        host: str | None = None,
        heartbeat_interval: float = 10.0,
        dead_pid: int | None = None,
        sandbox: str | None = None,
    ) -> Worker:
        """Register (or re-register, keeping its id) a worker by name.

        `dead_pid`: the caller found that the name's previous holder, pid `dead_pid` on `host`,
        no longer runs. If the row still names that process, its live claims are expired in
        this transaction: a worker restarted under its name takes its task back at once
        instead of waiting out its own dead claim's lease."""
        caps = _dump(_strings(capabilities, "capability"))
        with self.transaction() as tx:
            row = tx.one("worker_by_name", name=name)
            if (
                row is not None
                and dead_pid is not None
                and row["pid"] == dead_pid
                and row["host"] == host
            ):
                for held in tx.all("claims_live_by_worker", worker=name):
                    self._expire(tx, Claim.from_row(held), reason="holder_dead", pid=dead_pid)
            params = {
                "pid": pid,
                "host": host,
                "capabilities": caps,
                "now": tx.now,
                "heartbeat_interval": heartbeat_interval,
                "sandbox": sandbox,
            }
            if row is None:
                worker_id = "worker-" + os.urandom(3).hex()
                tx.run("worker_insert", id=worker_id, name=name, **params)
            else:
                worker_id = row["id"]
                tx.run("worker_restart", id=worker_id, **params)
            self._event(tx, "worker_started", worker=name, pid=pid, host=host)
            return Worker.from_row(tx.one("worker_by_id", id=worker_id))

    @retried
    def heartbeat(
        self, worker_id: str, *, status: str | None = None, current_task: str | None = None
    ) -> bool:
        """Record that the worker is alive; returns True when someone asked it to stop."""
        with self.transaction() as tx:
            row = tx.one(
                "worker_heartbeat",
                id=worker_id,
                now=tx.now,
                status=status,
                current_task=current_task,
            )
            if row is None:
                raise errors.WorkerNotFoundError(f"no worker with id {worker_id!r}")
            return bool(row["stop_requested"])

    @retried
    def stop_worker(self, name_or_id: str, *, stopped: bool = False) -> Worker:
        """Ask a worker to stop (it sees this at its next heartbeat), or mark it stopped."""
        with self.transaction() as tx:
            row = tx.one("worker_by_name", name=name_or_id) or tx.one("worker_by_id", id=name_or_id)
            if row is None:
                raise errors.WorkerNotFoundError(
                    f"no worker named {name_or_id!r}", hint="`ralph worker list --all` shows them"
                )
            if stopped:
                tx.run(
                    "worker_set_status",
                    id=row["id"],
                    status="stopped",
                    current_task=None,
                    now=tx.now,
                )
                self._event(tx, "worker_stopped", worker=row["name"])
            else:
                tx.run("worker_request_stop", id=row["id"])
            return Worker.from_row(tx.one("worker_by_id", id=row["id"]))

    @retried
    def workers(self) -> list[Worker]:
        with self.transaction(write=False) as tx:
            return [Worker.from_row(r) for r in tx.all("workers_list")]
