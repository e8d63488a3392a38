"""Fallback agents: the ordered list of agent CLIs a run may use (`--agent claude,codex`,
`[run] agents = [...]`), and which of them the next attempt gets.

One `AgentPool` is shared by the workers of a run (through RunControl). Each agent in it is
available, rate-limited until a time, auth-failed (for the rest of the run) or over its
`[agents.NAME] max_cost`. Attempts go to the first available agent in the list: a limit longer
than `[run] fallback_after` (or an auth failure, or a spent budget) moves the workers on to the
next one, and they come back to an earlier one once its reset time has passed. Each move is an
`agent_switched` event (from, to, reason, until) and a line in the run log. Only when every agent
is unavailable does the run pause (all limited: until the earliest reset) or stop (exit 10 when
an auth failure is among the causes, as with one agent).

A task whose metadata names an `agent` is pinned to that CLI: it waits for that agent's reset
rather than running on another one.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ralph.errors import AgentAuthError, ConfigError, RalphError

DEFAULT_FALLBACK_AFTER = 120.0  # seconds: a limit that resets sooner is waited out


@dataclass
class RunSettings:
    """`[run]` in ralph.toml: the fallback list and how long a limit must be to switch."""

    agents: list[str] = field(default_factory=list)
    fallback_after: float = DEFAULT_FALLBACK_AFTER


def parse_run(value: Any, source: str) -> RunSettings:
    """Validate the `[run]` table; errors name the file and the key."""
    from ralph.durations import parse_duration
    from ralph.errors import UsageError

    if not isinstance(value, dict):
        raise ConfigError(f"{source}: run must be a table ([run])")
    unknown = sorted(set(value) - {"agents", "fallback_after"})
    if unknown:
        raise ConfigError(
            f"{source}: unknown key run.{unknown[0]}", hint="known keys: agents, fallback_after"
        )
    run = RunSettings()
    if value.get("agents") not in (None, []):  # empty: the one `agent`
        run.agents = agent_list(value["agents"], f"{source}: run.agents")
    if value.get("fallback_after") in (0, "0", "0s", False):  # switch at any limit
        run.fallback_after = 0.0
    elif "fallback_after" in value:
        try:
            run.fallback_after = parse_duration(value["fallback_after"], what="run.fallback_after")
        except UsageError as exc:
            raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from exc
    return run


def agent_list(value: Any, where: str) -> list[str]:
    """Agent names from "claude,codex" or ["claude", "codex"]: non-empty, no repeats."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{where} must be a list of agent names, got {value!r}")
    names = [v.strip() for v in items if v.strip()]
    if not names:
        raise ConfigError(f"{where} names no agent", hint='e.g. agents = ["claude", "codex"]')
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where} names {repeated[0]!r} twice")
    return names


def max_cost_of(spec: dict[str, Any], name: str) -> float | None:
    """`[agents.NAME] max_cost`: USD this agent may spend in one run, or None."""
    value = spec.get("max_cost")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"[agents.{name}] max_cost must be a number of USD >= 0, got {value!r}")
    return float(value)


@dataclass
class Member:
    """One agent of the pool, with what is known about it in this run."""

    name: str
    agent: Any  # ralph.agents.base.Agent
    sandbox: Any = None  # its ralph.sandbox.confine.Sandbox (the allow-list is per agent)
    max_cost: float | None = None
    in_list: bool = True  # False: resolved only for tasks pinned to it
    limited_until: float = 0.0
    auth_error: AgentAuthError | None = None
    spent: float = 0.0

    def state(self, now: float) -> str:
        if self.auth_error is not None:
            return "auth_failed"
        if self.max_cost is not None and self.spent >= self.max_cost:
            return "over_budget"
        if self.limited_until > now:
            return "limited"
        return "available"


@dataclass
class Unavailable(Exception):
    """No agent can take a task now. The task is settled as `outcome` without an attempt:
    "rate_limited" (released; the run pauses until `pause_until`), "agent_unavailable" (back
    in `retry_in` s: its pinned agent is limited) or, with `stop`, the run ends (with `error`,
    or cleanly when every budget is spent)."""

    outcome: str
    note: str
    retry_in: float = 0.0
    pause_until: float | None = None
    stop: bool = False
    error: RalphError | None = None


class AgentPool:
    """The agents of one run and the one each next attempt gets; thread-safe."""

    def __init__(
        self,
        members: list[Member],
        *,
        fallback_after: float = DEFAULT_FALLBACK_AFTER,
        factory: Callable[[str], Member] | None = None,
        record: Callable[..., None] | None = None,
        log: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.members = {m.name: m for m in members}
        self.order = [m.name for m in members]
        self.fallback_after = fallback_after
        self.factory = factory  # resolves an agent a task is pinned to that the list lacks
        self.record = record or (lambda kind, **data: None)  # store.note_event
        self.log = log or (lambda line: None)
        self.clock = clock
        self._lock = threading.Lock()
        self.current = self._first_available(clock())
        for m in members:  # no credentials at the preflight: the run starts with a later one
            if m.auth_error is not None and self.current is not None:
                self._switched(m.name, self.current, "auth_failed", None, m.auth_error.message)

    # -- which agent runs the next attempt ------------------------------------------------
    def options_for(self, task: Any, opt: Any) -> Any:
        """`opt` (RunOptions) with the agent for `task`; raises Unavailable when none can run
        it now."""
        pinned = (task.metadata or {}).get("agent")
        member = self._pinned(str(pinned)) if pinned else self._next()
        return dataclasses.replace(
            opt, agent=member.agent, agent_name=member.name, sandbox=member.sandbox
        )

    def _next(self) -> Member:
        with self._lock:
            now = self.clock()
            found = self._first_available(now)
            if found is None:
                raise self._none_left(now)
            before, self.current = self.current, found
            if before is not None and self.order.index(found) < self.order.index(before):
                self._switched(before, found, "reset_passed", None, f"{found} is available again")
            return self.members[found]

    def _pinned(self, name: str) -> Member:
        with self._lock:
            member = self.members.get(name)
        if member is None:
            member = self._resolve(name)
        now = self.clock()
        state = member.state(now)
        if state == "available":
            return member
        if state == "limited":
            note = f"pinned to agent {name!r}, rate-limited until {_clock(member.limited_until)}"
            raise Unavailable("agent_unavailable", note, retry_in=member.limited_until - now)
        if state == "auth_failed":
            assert member.auth_error is not None
            error = member.auth_error
            raise Unavailable("auth_failed", error.message, stop=True, error=error)
        note = f"a task is pinned to agent {name!r}, which reached its max_cost"
        raise Unavailable("agent_unavailable", note, stop=True)

    def _resolve(self, name: str) -> Member:
        """An agent outside the list that a task is pinned to, resolved once."""
        try:
            if self.factory is None:
                raise ConfigError(f"unknown agent {name!r}")
            member = self.factory(name)
        except RalphError as exc:
            why = f"a task is pinned to agent {name!r}, which this run cannot launch: "
            error = ConfigError(why + exc.message, hint=exc.hint)
            raise Unavailable("internal_error", error.line(), stop=True, error=error) from exc
        member.in_list = False
        with self._lock:
            return self.members.setdefault(name, member)

    # -- what the workers tell it -------------------------------------------------------
    def on_limited(
        self, name: str, until: float, why: str, control: Any, by: str | None = None
    ) -> None:
        """`name` is rate-limited until `until`: a short limit pauses every worker as with one
        agent; a longer one moves the workers to the next available agent, or pauses them
        until the earliest reset when none is."""
        with self._lock:
            now = self.clock()
            member = self.members.get(name)
            if until - now <= self.fallback_after or member is None:
                pause: float | None = until
            else:
                member.limited_until = max(member.limited_until, until)
                pause = self._moved_on(member, "rate_limited", until, why, now)
        if pause is not None:
            control.pause_until(pause, f"rate limited: {why}", by=by)

    def on_auth_failed(self, name: str, error: AgentAuthError, control: Any) -> None:
        """`name` cannot authenticate (for the rest of the run): the next agent takes over;
        only when none is left does the run stop with the error (exit 10)."""
        try:
            with self._lock:
                member = self.members.get(name)
                if member is None:
                    raise Unavailable("auth_failed", error.message, stop=True, error=error)
                member.auth_error = member.auth_error or error
                pause = self._moved_on(member, "auth_failed", None, error.message, self.clock())
        except Unavailable as exc:
            control.stop_all(exc.note, error=exc.error, grace=0)
            return
        if pause is not None:
            control.pause_until(pause, "every other agent is rate-limited")

    def on_spent(self, name: str, cost: float | None, control: Any) -> None:
        """Add an attempt's cost to `name`; once its max_cost is reached the workers move on,
        and the run stops (cleanly, as with --max-cost) when every budget is spent."""
        if not cost:
            return
        try:
            with self._lock:
                member = self.members.get(name)
                if member is None or member.max_cost is None:
                    return
                was = member.state(self.clock())
                member.spent += cost
                if was == "over_budget" or member.spent < member.max_cost:
                    return
                why = f"spent ${member.spent:.4f} of its max_cost ${member.max_cost:.2f}"
                pause = self._moved_on(member, "over_budget", None, why, self.clock())
        except Unavailable as exc:
            control.stop_all(exc.note, error=exc.error)
            return
        if pause is not None:
            control.pause_until(pause, "every other agent is rate-limited")

    def _moved_on(
        self, member: Member, reason: str, until: float | None, why: str, now: float
    ) -> float | None:
        """After `member` became unavailable: the next agent (one event and log line, however
        many workers report it), or the earliest reset to pause until; raises Unavailable
        when no agent is left. Called with the lock held."""
        if not member.in_list:
            return None  # only the tasks pinned to it wait
        current = self.members.get(self.current or "")
        if current is not None and current is not member and current.state(now) == "available":
            return None  # the workers had already moved past it
        found = self._first_available(now)
        if found is not None:
            self._switched(member.name, found, reason, until, why)
            self.current = found
            return None
        left = self._none_left(now)
        if left.stop:
            raise left
        return left.pause_until

    def _first_available(self, now: float) -> str | None:
        return next((n for n in self.order if self.members[n].state(now) == "available"), None)

    def _none_left(self, now: float) -> Unavailable:
        """Every agent in the list is unavailable: pause until the earliest reset, else stop."""
        listed = [self.members[n] for n in self.order]
        resets = [m.limited_until for m in listed if m.state(now) == "limited"]
        if resets:
            until = min(resets)
            note = f"every agent is rate-limited; the first is back at {_clock(until)}"
            return Unavailable("rate_limited", note, pause_until=until)
        failed = [m for m in listed if m.auth_error is not None]
        if failed:
            first = failed[0].auth_error
            assert first is not None
            names = ", ".join(m.name for m in failed)
            error = first  # one agent: its own error, as without a list
            if len(listed) > 1:
                error = AgentAuthError(
                    f"no agent could authenticate ({names}): {first.message}",
                    hint=first.hint,
                    agent=first.data.get("agent"),
                )
            return Unavailable("auth_failed", error.message, stop=True, error=error)
        return Unavailable("agent_unavailable", "every agent reached its max_cost", stop=True)

    def _switched(
        self, before: str, after: str, reason: str, until: float | None, why: str
    ) -> None:
        data = {"from": before, "to": after, "reason": reason, "until": until, "why": why}
        try:
            self.record("agent_switched", **data)
        except Exception as exc:  # noqa: BLE001 - the switch holds; only its record is lost
            self.log(f"could not record the agent switch: {exc}")
        when = f" until {_clock(until)}" if until else ""
        self.log(f"switching agents: {before} -> {after} ({reason.replace('_', ' ')}{when}: {why})")


def settle_unavailable(loop: Any, task: Any, claim: Any, exc: Unavailable) -> None:
    """End the claim of a task no agent can take now (no attempt), then pause or stop the run
    as `exc` says. `loop` is the WorkerLoop."""
    loop.tally.agent_wait = exc.retry_in
    loop._settle_without_attempt(task, claim, exc.outcome, exc.note)
    loop.log(f"{task.id}: no agent for it now: {exc.note}")
    if exc.pause_until is not None:
        loop.control.pause_until(exc.pause_until, exc.note)
    if exc.stop:
        loop.control.stop_all(exc.note, error=exc.error)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))
