"""A worker's registration and heartbeat: the row `worker list` and the sweeper read, beaten
on a thread so a long agent run never looks like a dead worker."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ralph import hostid, reaper
from ralph.options import RunOptions, heartbeat_interval
from ralph.store.base import SQLStore

HOST = hostid.HOST  # "name (tag)": hosts sharing a hostname are told apart


class Heartbeat:
    """Registers the worker, then beats until stopped, showing the task `current()` names;
    `asked_to_stop` turns true when `ralph worker stop NAME` (or the web page) asks."""

    def __init__(
        self,
        store: SQLStore,
        opt: RunOptions,
        log: Callable[[str], None],
        current: Callable[[], str | None],
    ):
        self.store, self.opt, self.log, self.current = store, opt, log, current
        self.worker_id: str | None = None
        self.asked_to_stop = False
        self._done = threading.Event()

    def start(self) -> None:
        worker = self.store.register_worker(
            self.opt.worker,
            capabilities=self.opt.capabilities,
            pid=os.getpid(),
            host=HOST,
            heartbeat_interval=heartbeat_interval(self.opt.lease),
            dead_pid=self._dead_predecessor(),
            sandbox=self.opt.policy(),
        )
        self.worker_id = worker.id

        def beat() -> None:
            while not self._done.wait(worker.heartbeat_interval):
                self.beat()

        threading.Thread(target=beat, name=f"heartbeat-{self.opt.worker}", daemon=True).start()

    def stop(self) -> None:
        self._done.set()
        if self.worker_id:
            self.store.stop_worker(self.worker_id, stopped=True)

    def _dead_predecessor(self) -> int | None:
        """The pid of this name's previous holder when it ran on this host and is gone (a
        SIGKILLed run restarted under the same name): its claims need no lease to run out."""
        for w in self.store.workers():
            mine = hostid.this_host(w.host)
            if w.name == self.opt.worker and mine and w.pid and w.pid != os.getpid():
                return None if reaper.alive(w.pid) else w.pid
        return None

    def beat(self) -> None:
        """One beat now (also called when a task is claimed, so `worker list` shows it)."""
        try:
            current = self.current()
            assert self.worker_id is not None
            status = "busy" if current else "idle"
            if (
                self.store.heartbeat(self.worker_id, status=status, current_task=current)
                and not self.asked_to_stop
            ):  # this worker only, after its task
                self.asked_to_stop = True
                self.log("asked to stop: taking no new task")
        except Exception as exc:  # a missed heartbeat is not worth stopping for
            self.log(f"heartbeat failed: {exc}")
