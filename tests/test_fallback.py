"""Fallback agents (ralph/fallback.py): the pool's policy with a clock the test moves, then
`ralph run` with two command agents from tests/agents/ that report a limit or an auth failure
in the command protocol, as real processes on real repositories and stores."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ralph.config import parse_settings
from ralph.control import RunControl
from ralph.errors import AgentAuthError, ConfigError
from ralph.fallback import AgentPool, Member, Unavailable
from ralph.store import open_store
from tests.gitutil import git
from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]
HOUR = 3600.0


# -- the pool's policy --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def pool_of(*names: str, clock: Clock, fallback_after: float = 120.0, **members: Member):
    events: list[dict] = []
    lines: list[str] = []
    pool = AgentPool(
        [members.get(n) or Member(n, agent=SimpleNamespace(name=n)) for n in names],
        fallback_after=fallback_after,
        record=lambda kind, **data: events.append({"kind": kind, **data}),
        log=lines.append,
        clock=clock,
    )
    control = RunControl(log=lines.append)
    return pool, control, events, lines


def task(agent: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(metadata={"agent": agent} if agent else {})


@dataclasses.dataclass
class Opt:
    """The RunOptions fields the pool replaces."""

    agent: object = None
    agent_name: str | None = None
    sandbox: object = None


def picked(pool: AgentPool, t: SimpleNamespace | None = None) -> str:
    """The agent the pool gives the next attempt (of `t`, or of an unpinned task)."""
    return pool.options_for(t or task(), Opt()).agent_name


def test_a_long_limit_moves_every_worker_to_the_next_agent_once_and_back_after_its_reset():
    clock = Clock()
    pool, control, events, _ = pool_of("claude", "codex", clock=clock)
    assert picked(pool) == "claude"
    reset = clock.now + HOUR
    for _worker in range(3):  # three workers hit the same limit
        pool.on_limited("claude", reset, "claude five_hour limit reached", control)
    assert picked(pool) == "codex"
    assert control.wait_while_paused()  # nobody paused
    assert [(e["from"], e["to"], e["reason"], e["until"]) for e in events] == [
        ("claude", "codex", "rate_limited", reset)
    ]
    clock.now = reset + 1
    assert picked(pool) == "claude"
    assert [(e["from"], e["to"], e["reason"]) for e in events[1:]] == [
        ("codex", "claude", "reset_passed")
    ]


def test_a_limit_shorter_than_fallback_after_is_waited_out_with_the_same_agent():
    clock = Clock()
    pool, control, events, lines = pool_of("claude", "codex", clock=clock)
    pool.on_limited("claude", clock.now + 60, "429", control)
    assert picked(pool) == "claude" and events == []
    assert any("pausing every worker until" in line for line in lines)


def test_a_limit_whose_reset_the_agent_did_not_say_moves_on_at_once():
    """codex names no reset time: ralph's own 60 s backoff is not a reason to keep waiting on
    it while another agent is free."""
    clock = Clock()
    pool, control, events, _ = pool_of("codex", "claude", clock=clock)
    pool.on_limited("codex", clock.now + 60, "429 Too Many Requests", control, "w1", known=False)
    assert picked(pool) == "claude"
    assert control.wait_while_paused()  # nobody paused
    assert [(e["from"], e["to"], e["reason"]) for e in events] == [
        ("codex", "claude", "rate_limited")
    ]


def test_the_pool_pauses_until_the_earliest_reset_when_every_agent_is_limited():
    clock = Clock()
    pool, control, events, lines = pool_of("claude", "codex", "gemini", clock=clock)
    pool.on_limited("claude", clock.now + 3 * HOUR, "limit", control)
    pool.on_limited("codex", clock.now + HOUR, "limit", control)
    assert not any("pausing" in line for line in lines)
    pool.on_limited("gemini", clock.now + 2 * HOUR, "limit", control)
    earliest = time.strftime("%H:%M:%S", time.localtime(clock.now + HOUR))
    assert any(f"pausing every worker until {earliest}" in line for line in lines), lines
    with pytest.raises(Unavailable) as left:
        picked(pool)
    assert left.value.outcome == "rate_limited" and left.value.pause_until == clock.now + HOUR
    clock.now += HOUR + 1
    assert picked(pool) == "codex"


def test_an_auth_failure_moves_on_and_only_all_of_them_stop_the_run_with_exit_10():
    clock = Clock()
    pool, control, events, _ = pool_of("claude", "codex", clock=clock)
    pool.on_auth_failed("claude", AgentAuthError("claude: invalid x-api-key"), control)
    assert picked(pool) == "codex" and control.reason is None
    clock.now += 10 * HOUR  # an auth failure does not pass with time
    assert picked(pool) == "codex"
    pool.on_auth_failed("codex", AgentAuthError("codex: 401"), control)
    assert isinstance(control.error, AgentAuthError) and control.error.exit_code == 10
    assert "claude, codex" in control.error.message
    assert [(e["from"], e["to"], e["reason"]) for e in events] == [
        ("claude", "codex", "auth_failed")
    ]


def test_an_agent_over_its_max_cost_hands_over_and_all_over_budget_stops_cleanly():
    clock = Clock()
    members = {"claude": Member("claude", agent=None, max_cost=1.0)}
    pool, control, events, _ = pool_of("claude", "codex", clock=clock, **members)
    pool.on_spent("claude", 0.6, control)
    assert picked(pool) == "claude"
    pool.on_spent("claude", 0.6, control)
    assert picked(pool) == "codex"
    assert [(e["from"], e["to"], e["reason"]) for e in events] == [
        ("claude", "codex", "over_budget")
    ]
    pool.members["codex"].max_cost = 0.5
    pool.on_spent("codex", 0.5, control)
    assert control.stopping.is_set() and control.error is None  # like --max-cost: exit 0


def test_a_pinned_task_waits_for_its_agent_and_others_are_not_held_up():
    clock = Clock()
    pool, control, events, _ = pool_of("claude", "codex", clock=clock)
    assert picked(pool, task("codex")) == "codex"
    pool.on_limited("codex", clock.now + HOUR, "limit", control)
    with pytest.raises(Unavailable) as waits:
        picked(pool, task("codex"))
    assert waits.value.outcome == "agent_unavailable" and waits.value.retry_in == HOUR
    assert not waits.value.stop
    assert picked(pool) == "claude" and events == []  # codex was not the agent in use


def test_run_agents_and_fallback_after_are_read_from_the_run_table():
    settings = parse_settings({"run": {"agents": ["claude", "codex"], "fallback_after": "5m"}})
    assert (settings.run.agents, settings.run.fallback_after) == (["claude", "codex"], 300.0)
    assert parse_settings({"run": {"fallback_after": 0}}).run.fallback_after == 0.0
    for bad in ({"agents": ["claude", "claude"]}, {"agents": 3}, {"agent": "claude"}):
        with pytest.raises(ConfigError):
            parse_settings({"run": bad})


# -- `ralph run` with two command agents --------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env["HOME"] = str(tmp_path / "home")
    env["LAUNCHES"] = str(tmp_path / "launches.txt")
    return env


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    (root / "README.md").write_text("hello\n")
    (root / ".gitignore").write_text("mine.txt\n")
    (root / "mine.txt").write_text("the user's own ignored notes\n")
    git(root, "add", "README.md", ".gitignore")
    git(root, "commit", "-q", "-m", "start")
    return root


def config(tmp_path: Path, alpha: str, beta: str = "paid", fallback_after: str = "0s") -> Path:
    """alpha and beta: command agents running tests/agents/limited.py in a mode."""
    path = tmp_path / "ralph.toml"
    script = str(AGENTS / "limited.py")
    path.write_text(
        f'[run]\nagents = ["alpha", "beta"]\nfallback_after = "{fallback_after}"\n'
        f"[agents.alpha]\ncommand = {json.dumps([sys.executable, script, alpha])}\n"
        f"[agents.beta]\ncommand = {json.dumps([sys.executable, script, beta])}\n"
    )
    return path


def ralph(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_ralph(*args, cwd=root, env=env, timeout=120)


def add(root: Path, env: dict[str, str], title: str, *extra: str) -> str:
    out = ralph(root, env, "add", title, "--json", *extra)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["id"]


def db(root: Path, env: dict[str, str] | None = None) -> str:
    """The run's store: RALPH_DB (PostgreSQL) when the test set it, else the repo's SQLite."""
    return (env or {}).get("RALPH_DB") or str(root / ".ralph" / "ralph.db")


def switches(root: Path, env: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    with open_store(db(root, env)) as store:
        return [
            (e.data["from"], e.data["to"], e.data["reason"])
            for e in store.events(kind="agent_switched")
        ]


def check_history(root: Path, done: list[str]) -> None:
    """Each done task's commit on main once, the user's untracked file untouched, fsck clean."""
    log = git(root, "log", "main", "--format=%B%x00")
    trailers = [
        line[6:] for m in log.split("\0") for line in m.splitlines() if line.startswith("Task: ")
    ]
    assert sorted(trailers) == sorted(done)
    assert (root / "mine.txt").read_text() == "the user's own ignored notes\n"
    assert (
        subprocess.run(["git", "-C", str(root), "fsck", "--strict"], capture_output=True).returncode
        == 0
    )


def test_a_rate_limited_first_agent_hands_its_tasks_to_the_second(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    env["LIMIT_RESET"] = str(time.time() + HOUR)
    env["AGENT_COST"] = "0.01"
    tasks = [add(repo, env, f"Task {n}") for n in range(3)]
    out = ralph(repo, env, "run", "--config", str(config(tmp_path, "rate")), "--json", "-q")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["done"] == 3 and summary["agents"] == {"alpha": 1, "beta": 3}
    assert switches(repo) == [("alpha", "beta", "rate_limited")]
    launches = Path(env["LAUNCHES"]).read_text().split("\n")
    assert [line.split()[1] for line in launches if line] == ["rate", "paid", "paid", "paid"]
    with open_store(repo / ".ralph" / "ralph.db") as store:
        (limited,) = [a for a in store.attempts() if a.agent == "alpha"]
        assert (limited.outcome, limited.counted) == ("rate_limited", False)
        assert all(store.get(t).attempts == 1 for t in tasks)
    shown = json.loads(ralph(repo, env, "show", limited.task_id, "--json").stdout)
    assert [(r["agent"], r["outcome"]) for r in shown["runs"]] == [
        ("alpha", "rate_limited"),
        ("beta", "success"),
    ]
    assert (
        "alpha (rate_limited), beta (success)" in ralph(repo, env, "show", limited.task_id).stdout
    )
    report = json.loads(ralph(repo, env, "report", "--run", "last", "--format", "json").stdout)
    assert [(s["from"], s["to"], s["reason"]) for s in report["agent_switches"]] == [
        ("alpha", "beta", "rate_limited")
    ]
    assert {a["agent"] for a in report["cost_by_agent"]} == {"alpha", "beta"}
    text = ralph(repo, env, "report", "--run", "last").stdout
    assert "Agent switches" in text and "rate_limited" in text
    assert all(any(t in line and " beta " in line for line in text.splitlines()) for t in tasks)
    check_history(repo, tasks)


def test_after_the_first_agent_s_reset_the_next_task_goes_back_to_it(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    reset = time.time() + 4  # with fallback_after 0, even a short limit switches
    env["LIMIT_RESET"] = str(reset)
    env["AGENT_COST"] = "0.01"
    first = add(repo, env, "Before the reset")
    run = subprocess.Popen(
        [*RALPH, "run", "--config", str(config(tmp_path, "rate")), "--watch", "--max-tasks", "2",
         "--json", "-q"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with open_store(repo / ".ralph" / "ralph.db") as store:
            deadline = time.monotonic() + 60
            while store.get(first).status != "done":
                assert time.monotonic() < deadline and run.poll() is None
                time.sleep(0.05)
        while time.time() <= reset:  # the limit's reset time has passed
            time.sleep(0.05)
        second = add(repo, env, "After the reset")
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert switches(repo) == [("alpha", "beta", "rate_limited"), ("beta", "alpha", "reset_passed")]
    with open_store(repo / ".ralph" / "ralph.db") as store:
        ran = {(a.task_id, a.agent, a.outcome) for a in store.attempts()}
    assert ran == {
        (first, "alpha", "rate_limited"),
        (first, "beta", "success"),
        (second, "alpha", "success"),
    }
    check_history(repo, [first, second])


def test_ralph_run_pauses_until_the_earliest_reset_when_every_agent_is_limited(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    beta_reset = time.time() + HOUR  # an hour before alpha's
    env["LIMIT_RESET"] = str(beta_reset + HOUR)
    path = config(tmp_path, "rate", "rate")
    beta_env = f'[agents.beta]\nenv = {{ LIMIT_RESET = "{beta_reset}" }}'
    path.write_text(path.read_text().replace("[agents.beta]", beta_env))
    beta_back = time.strftime("%H:%M:%S", time.localtime(beta_reset))
    first = add(repo, env, "Task")
    run = subprocess.Popen(
        [*RALPH, "run", "--config", str(path)], cwd=repo, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    said = []
    try:
        for line in run.stderr:
            said.append(line)
            if "pausing every worker until" in line:
                break
        assert f"pausing every worker until {beta_back}" in said[-1], said
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode in (0, 12)  # 12: the signal came before the last attempt was settled
    assert switches(repo) == [("alpha", "beta", "rate_limited")]
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.get(first).attempts == 0 and store.get(first).status == "open"
        assert [(a.agent, a.outcome) for a in store.attempts()] == [
            ("alpha", "rate_limited"),
            ("beta", "rate_limited"),
        ]
    check_history(repo, [])


def test_an_auth_failure_of_the_first_agent_continues_with_the_second_and_exits_0(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    env["AGENT_COST"] = "0.01"
    tasks = [add(repo, env, f"Task {n}") for n in range(2)]
    out = ralph(repo, env, "run", "--config", str(config(tmp_path, "auth")))
    assert out.returncode == 0, out.stderr
    assert switches(repo) == [("alpha", "beta", "auth_failed")]
    assert "switching agents: alpha -> beta (auth failed: " in out.stderr
    launches = Path(env["LAUNCHES"]).read_text().split()
    assert launches.count("auth") == 1  # never launched again in this run
    check_history(repo, tasks)


def test_every_agent_failing_auth_stops_the_run_with_exit_10_counting_nothing(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    first = add(repo, env, "Task")
    out = ralph(repo, env, "run", "--config", str(config(tmp_path, "auth", "auth")), "-q")
    assert out.returncode == 10, out.stderr
    assert "no agent could authenticate (alpha, beta)" in out.stderr
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.get(first).attempts == 0 and store.get(first).status == "open"
    check_history(repo, [])


def test_a_task_pinned_to_an_agent_runs_on_it_and_the_others_on_the_first(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    env["AGENT_COST"] = "0.01"
    free = add(repo, env, "Any agent")
    with open_store(repo / ".ralph" / "ralph.db") as store:
        pinned = store.add("Only beta", metadata={"agent": "beta"}).id
    out = ralph(repo, env, "run", "--config", str(config(tmp_path, "paid")), "-q")
    assert out.returncode == 0, out.stderr
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert {(a.task_id, a.agent) for a in store.attempts()} == {
            (free, "alpha"),
            (pinned, "beta"),
        }
    assert switches(repo) == []
    check_history(repo, [free, pinned])


def test_the_first_agent_s_max_cost_hands_the_rest_to_the_second(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    env["AGENT_COST"] = "0.6"
    path = config(tmp_path, "paid")
    path.write_text(path.read_text().replace("[agents.beta]", "max_cost = 1.0\n[agents.beta]"))
    tasks = [add(repo, env, f"Task {n}") for n in range(3)]
    out = ralph(repo, env, "run", "--config", str(path), "-q")
    assert out.returncode == 0, out.stderr
    with open_store(repo / ".ralph" / "ralph.db") as store:
        agents = [a.agent for a in sorted(store.attempts(), key=lambda a: a.id)]
    assert agents == ["alpha", "alpha", "beta"]  # $1.20 spent by alpha after two
    assert switches(repo) == [("alpha", "beta", "over_budget")]
    check_history(repo, tasks)


def test_three_workers_switch_once_and_land_every_task_once(
    repo: Path, env: dict[str, str], tmp_path: Path, store_backend: str, store_url: str
):
    if store_backend == "postgres":
        env["RALPH_DB"] = store_url
    env["LIMIT_RESET"] = str(time.time() + HOUR)
    env["AGENT_COST"] = "0.01"
    tasks = [add(repo, env, f"Task {n}") for n in range(6)]
    path = str(config(tmp_path, "rate"))
    out = ralph(repo, env, "run", "--config", path, "--workers", "3", "--json", "-q")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["done"] == 6 and summary["agents"]["beta"] == 6
    assert 1 <= summary["agents"]["alpha"] <= 3  # at most one launch per worker before the switch
    assert switches(repo, env) == [("alpha", "beta", "rate_limited")]
    with open_store(db(repo, env)) as store:
        assert all(store.get(t).attempts == 1 for t in tasks)
    check_history(repo, tasks)


def test_a_task_pinned_to_an_agent_the_run_cannot_launch_stops_it_with_exit_8(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    with open_store(repo / ".ralph" / "ralph.db") as store:
        pinned = store.add("Only nosuch", metadata={"agent": "nosuch"}).id
    out = ralph(repo, env, "run", "--config", str(config(tmp_path, "paid")), "-q")
    assert out.returncode == 8, out.stderr
    assert "pinned to agent 'nosuch', which this run cannot launch" in out.stderr
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.get(pinned).status == "open" and store.attempts() == []
    assert not Path(env["LAUNCHES"]).exists()
    check_history(repo, [])


def test_a_run_table_of_one_agent_runs_that_agent(repo: Path, env: dict[str, str], tmp_path: Path):
    env["AGENT_COST"] = "0.01"
    path = config(tmp_path, "auth")
    path.write_text(path.read_text().replace('agents = ["alpha", "beta"]', 'agents = ["beta"]'))
    task = add(repo, env, "Task")
    out = ralph(repo, env, "run", "--config", str(path), "-q")
    assert out.returncode == 0, out.stderr
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert [a.agent for a in store.attempts()] == ["beta"]
    check_history(repo, [task])
