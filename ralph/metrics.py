"""Prometheus metrics, read from the store at every scrape (so any host of a PostgreSQL pool
serves the whole pool): `/metrics` on `ralph web`, and `ralph metrics --port` on headless hosts.

The exposition is prometheus-client's own; the numbers are those of `ralph stats` and `ralph
status` (ralph.ops.stats), not a second count. prometheus_client is imported only here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from ralph.ops.stats import cost_of, counts_of, model_of
from ralph.store.base import SQLStore


class StoreCollector:
    """A prometheus-client collector whose every scrape is a fresh read of the store."""

    def __init__(self, store: SQLStore):
        self.store = store

    def describe(self) -> list[Any]:
        return []  # nothing to check at registration: the families come from the store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily  # lazy: start-up

        store, now = self.store, self.store.now()  # the database's clock, as the leases use
        tasks = GaugeMetricFamily("ralph_tasks", "Tasks by status.", labels=["status"])
        for status, n in sorted(store.status_counts().items()):
            tasks.add_metric([status], n)
        yield tasks
        queue = GaugeMetricFamily(
            "ralph_open_tasks", "Open tasks by state (ready, blocked, running, retry_wait).",
            labels=["state"],
        )  # fmt: skip
        for state, n in sorted(store.queue_counts().items()):
            queue.add_metric([state], n)
        yield queue
        workers = GaugeMetricFamily("ralph_workers", "Workers by state.", labels=["state"])
        states = Counter(w.state(now) for w in store.workers())
        for state in ("idle", "busy", "dead", "stopped"):
            workers.add_metric([state], states.get(state, 0))
        for state in sorted(set(states) - {"idle", "busy", "dead", "stopped"}):
            workers.add_metric([state], states[state])
        yield workers
        yield from self._attempts(store)
        ready = [t for t in store.list(status="open") if t.is_ready(now)]
        oldest = min((max(t.created_at, t.not_before) for t in ready), default=None)
        age = GaugeMetricFamily(
            "ralph_oldest_ready_task_age_seconds",
            "How long the oldest ready task has waited to be claimed (0: none is ready).",
        )
        age.add_metric([], round(now - oldest, 3) if oldest is not None else 0.0)
        yield age
        lag = GaugeMetricFamily(
            "ralph_lease_renewal_lag_seconds",
            "The longest time since a live claim was taken or renewed (0: no live claim).",
        )
        live = [c for c in store.claims() if c.expires_at > now]
        lag.add_metric(
            [], round(max((now - (c.expires_at - c.lease_seconds) for c in live), default=0.0), 3)
        )
        yield lag
        from ralph.ops.status import pause_in_force

        paused = GaugeMetricFamily(
            "ralph_paused",
            "1 while a pause holds workers: `ralph pause`, or a run's own after a rate limit.",
        )
        paused.add_metric([], 1.0 if pause_in_force(store) else 0.0)
        yield paused

    def _attempts(self, store: SQLStore) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily  # lazy: start-up

        launches = CounterMetricFamily(
            "ralph_launches", "Agent launches by agent and outcome (running: not ended yet).",
            labels=["agent", "outcome"],
        )  # fmt: skip
        attempts = CounterMetricFamily(
            "ralph_attempts", "Counted attempts by agent (what --max-attempts counts).",
            labels=["agent"],
        )  # fmt: skip
        cost = CounterMetricFamily(
            "ralph_cost_usd", "Known cost in USD by agent and model.", labels=["agent", "model"]
        )
        unknown = CounterMetricFamily(
            "ralph_unknown_cost_launches",
            "Finished launches that reported no cost, by agent and model.",
            labels=["agent", "model"],
        )
        tokens = CounterMetricFamily(
            "ralph_tokens", "Tokens by agent, model and direction.",
            labels=["agent", "model", "direction"],
        )  # fmt: skip
        landings = CounterMetricFamily("ralph_landings", "Commits landed on the target.")
        conflicts = CounterMetricFamily("ralph_conflicts", "Launches that met a merge conflict.")
        by_agent: dict[str, list[Any]] = defaultdict(list)
        for a in store.attempts():
            by_agent[a.agent].append(a)

        landed = conflicted = 0
        for agent, items in sorted(by_agent.items()):
            for outcome, n in sorted(Counter(a.outcome or "running" for a in items).items()):
                launches.add_metric([agent, outcome], n)
            attempts.add_metric([agent], counts_of(items)["attempts"])
            by_model: dict[str, list[Any]] = defaultdict(list)
            for a in items:
                by_model[model_of(a)].append(a)
            for model, ran in sorted(by_model.items()):
                spent = cost_of(ran)
                cost.add_metric([agent, model], spent["cost_usd"] or 0.0)
                unknown.add_metric([agent, model], spent["unknown_cost"])
                for direction in ("input", "output"):
                    used = sum(getattr(a, f"{direction}_tokens") or 0 for a in ran)
                    tokens.add_metric([agent, model, direction], used)
            landed += sum(1 for a in items if a.outcome == "success")
            conflicted += sum(1 for a in items if a.outcome == "merge_conflict")
        landings.add_metric([], landed)
        conflicts.add_metric([], conflicted)
        yield from (launches, attempts, cost, unknown, tokens, landings, conflicts)


def registry(store: SQLStore) -> Any:
    """A registry holding only ralph's collector (no process metrics of the scraping host)."""
    from prometheus_client import CollectorRegistry  # lazy: start-up

    found = CollectorRegistry(auto_describe=False)
    found.register(StoreCollector(store))  # type: ignore[arg-type]
    return found


def exposition(store: SQLStore) -> tuple[bytes, str]:
    """(body, content type) of one scrape."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest  # lazy: start-up

    return generate_latest(registry(store)), CONTENT_TYPE_LATEST


def serve(store: SQLStore, port: int, host: str = "127.0.0.1") -> Any:
    """Serve /metrics on host:port in a background thread; returns (server, thread)."""
    from prometheus_client import start_http_server  # lazy: start-up

    return start_http_server(port, addr=host, registry=registry(store))
