"""Prometheus metrics, parsed with prometheus-client's own text parser and compared with
`ralph stats --json` and `ralph status --json` for the same store, on every backend: printed by
`ralph metrics`, served by `ralph metrics --port` and by `ralph web` at /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import ralph as run_ralph
from tests.support.night import night
from tests.webutil import free_port, request, serve

RALPH = [sys.executable, "-m", "ralph"]


def env_for(tmp_path: Path, db: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    return {**env, "HOME": str(tmp_path / "home"), "RALPH_DB": db}


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = run_ralph(*args, env=env, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def samples(text: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} from an exposition."""
    found: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name][tuple(sorted(s.labels.items()))] = s.value
    return found


def summed(family: dict[tuple, float], **match: str) -> float:
    """The sum of a family's samples whose labels include `match`."""
    return sum(v for k, v in family.items() if match.items() <= dict(k).items())


def check_against_stats(text: str, stats: dict, status: dict, by_model: dict) -> None:
    got = samples(text)
    for group in stats["groups"]:
        agent = group["key"]
        outcomes = {
            dict(k)["outcome"]: v for k, v in got["ralph_launches_total"].items()
            if dict(k)["agent"] == agent
        }  # fmt: skip
        assert outcomes == group["outcomes"], agent
        assert sum(outcomes.values()) == group["launches"]
        assert got["ralph_attempts_total"][(("agent", agent),)] == group["attempts"]
        cost = summed(got["ralph_cost_usd_total"], agent=agent)
        assert cost == pytest.approx(group["cost_usd"] or 0.0)
        unknown = summed(got["ralph_unknown_cost_launches_total"], agent=agent)
        assert unknown == group["unknown_cost"]
        tokens = summed(got["ralph_tokens_total"], agent=agent, direction="input")
        assert tokens == group["input_tokens"]
    for group in by_model["groups"]:
        model = group["key"]
        cost = summed(got["ralph_cost_usd_total"], model=model)
        assert cost == pytest.approx(group["cost_usd"] or 0.0), model
        unknown = summed(got["ralph_unknown_cost_launches_total"], model=model)
        assert unknown == group["unknown_cost"], model
    by_status = {dict(k)["status"]: v for k, v in got["ralph_tasks"].items()}
    counts = {k: v for k, v in status["counts"].items() if k != "total"}
    assert by_status == counts
    total = stats["total"]["outcomes"]
    assert got["ralph_landings_total"][()] == total.get("success", 0)
    assert got["ralph_conflicts_total"][()] == total.get("merge_conflict", 0)
    assert got["ralph_paused"][()] == (1 if status["pause"] else 0)


def test_metrics_match_stats_and_status_for_the_same_store(store, clock, store_url, tmp_path):
    night(store, clock)
    clock.set(time.time() - 100)  # a ready task added 100 s ago (by the real clock)
    store.add("Still to do", id="Q")
    env = env_for(tmp_path, store_url)
    text = cli(env, tmp_path, "metrics")
    stats = json.loads(cli(env, tmp_path, "stats", "--json"))
    by_model = json.loads(cli(env, tmp_path, "stats", "--by", "model", "--json"))
    status = json.loads(cli(env, tmp_path, "status", "--json"))
    check_against_stats(text, stats, status, by_model)
    got = samples(text)
    assert got["ralph_launches_total"][(("agent", "claude"), ("outcome", "merge_conflict"))] == 1
    unknown = got["ralph_unknown_cost_launches_total"]
    assert unknown[(("agent", "command"), ("model", "unknown"))] == 2
    cost = got["ralph_cost_usd_total"]
    assert cost[(("agent", "claude"), ("model", "sonnet-4"))] == pytest.approx(0.50)
    assert cost[(("agent", "claude"), ("model", "opus-4"))] == pytest.approx(0.20)
    assert got["ralph_open_tasks"][(("state", "ready"),)] == 1
    assert got["ralph_oldest_ready_task_age_seconds"][()] >= 100
    store.share_run_pause("h:1:2", until=store.now() + 600, reason="rate limited: 429", by="w1")
    assert samples(cli(env, tmp_path, "metrics"))["ralph_paused"][()] == 1  # a run's own
    store.end_run_pause("h:1:2")
    assert samples(cli(env, tmp_path, "metrics"))["ralph_paused"][()] == 0
    store.pause("deploying", by="ops")
    paused = samples(cli(env, tmp_path, "metrics"))
    assert paused["ralph_paused"][()] == 1


def test_ralph_metrics_port_and_ralph_web_serve_the_same_numbers(store, clock, store_url, tmp_path):
    night(store, clock)
    env = env_for(tmp_path, store_url)
    stats = json.loads(cli(env, tmp_path, "stats", "--json"))
    by_model = json.loads(cli(env, tmp_path, "stats", "--by", "model", "--json"))
    status = json.loads(cli(env, tmp_path, "status", "--json"))
    port = free_port()
    proc = subprocess.Popen(
        [*RALPH, "metrics", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once it listens
        assert f"http://127.0.0.1:{port}/metrics" in line, proc.stderr and proc.stderr.read()
        code, headers, served = request(f"http://127.0.0.1:{port}", "GET", "/metrics")
        assert code == 200 and headers["content-type"].startswith("text/plain")
        check_against_stats(served, stats, status, by_model)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    with serve(tmp_path, env) as (_, base):
        code, headers, page = request(base, "GET", "/metrics")
    assert code == 200 and headers["content-type"].startswith("text/plain")
    check_against_stats(page, stats, status, by_model)
    assert samples(page)["ralph_launches_total"] == samples(served)["ralph_launches_total"]
