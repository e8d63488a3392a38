"""Why a worker stops taking tasks for a while: an agent's auth or limit signal (stop the run,
hand over to the next agent, or pause every worker until the reset) and a pause set through
the store (`ralph pause`, the web page), which holds every host."""

from __future__ import annotations

import time
from collections.abc import Callable

from ralph.agents.base import AgentSignal
from ralph.control import RunControl, backoff_delay
from ralph.errors import AgentAuthError
from ralph.options import RunOptions
from ralph.settle import Tally
from ralph.store.base import SQLStore


def on_agent_signal(sig: AgentSignal, opt: RunOptions, control: RunControl, tally: Tally) -> None:
    """Runs on a reader thread the moment the parser sees an auth failure or a limit."""
    if sig.kind == "auth_failed":
        fix = sig.fix
        error = AgentAuthError(
            f"agent {opt.agent_name!r} could not authenticate: {sig.message}",
            hint=(fix + "; " if fix else "")
            + "log the agent in (or fix its API key) and run again; no attempt was counted",
            agent=opt.agent_name,
        )
        if control.pool is not None:  # the next agent, if any (ralph.fallback)
            control.pool.on_auth_failed(opt.agent_name, error, control)
        else:
            control.stop_all(error.message, error=error, grace=0)
        return
    tally.rate_limits_in_a_row += 1
    until = sig.reset_at or time.time() + (
        sig.retry_after
        or backoff_delay(tally.rate_limits_in_a_row, opt.rate_limit_pause, opt.backoff_max)
    )
    if sig.kind == "rate_limited" and control.pool is not None:
        known = sig.reset_at is not None or sig.retry_after is not None
        control.pool.on_limited(opt.agent_name, until, sig.message, control, opt.worker, known)
        return
    what = "no network" if sig.kind == "network_down" else "rate limited"
    control.pause_until(until, f"{what}: {sig.message}", by=opt.worker)


class StorePause:
    """Waits out a pause set through the store, saying so once in the log."""

    def __init__(self, store: SQLStore, control: RunControl, log: Callable[[str], None]):
        self.store, self.control, self.log = store, control, log
        self._said: str | None = None

    def wait_out(self, poll: float) -> bool:
        """False when the run stopped while paused."""
        while (pause := self.store.paused()) is not None:
            said = f"{pause.get('reason')}"
            if self._said != said:
                by = f" by {pause['by']}" if pause.get("by") else ""
                self.log(f"paused{by}: {said}; waiting for `ralph resume`")
                self._said = said
            if not self.control.wait(poll):
                return False
        if self._said is not None:
            self.log("resumed")
            self._said = None
        return True
