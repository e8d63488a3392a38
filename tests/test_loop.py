"""The worker loop in-process: real git repos, real SQLite stores, real agent processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ralph.agents.base import Agent, AgentSignal, StreamParser
from ralph.config import Settings
from ralph.control import RunControl, RunSummary, backoff_delay
from ralph.errors import TasksFailedError
from ralph.prompts import load_commit_message, load_prompt
from ralph.runner import run, run_workers
from ralph.store import ensure_ralph_dir, open_store
from ralph.store.base import SQLStore
from ralph.worker import RunOptions, WorkerLoop, heartbeat_interval
from ralph.workspace.checkout import CheckoutWorkspace

AGENTS = Path(__file__).parent / "agents"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    (root / "README.md").write_text("hello\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "start")
    ensure_ralph_dir(root)
    return root


@pytest.fixture
def store(repo: Path) -> SQLStore:
    with open_store(repo / ".ralph" / "ralph.db") as s:
        yield s


class ClaudeLinesParser(StreamParser):
    """Reads the claude stream-json shapes the fake agent prints (api_retry, result)."""

    def feed(self, line: str, stream: str) -> list[AgentSignal]:
        try:
            event = json.loads(line)
        except ValueError:
            return []
        if event.get("subtype") == "api_retry":
            if event.get("error_status") in (401, 403):
                return [AgentSignal("auth_failed", "HTTP 401 authentication_failed")]
            if event.get("error_status") == 429:
                return [AgentSignal("rate_limited", "HTTP 429 rate_limit", retry_after=0.3)]
        if event.get("type") == "result":
            self.report.cost_usd = event.get("total_cost_usd")
            self.report.is_error = bool(event.get("is_error"))
            self.report.session_id = event.get("session_id")
            usage = event.get("usage") or {}
            self.report.input_tokens = usage.get("input_tokens")
            self.report.output_tokens = usage.get("output_tokens")
        return []


class FakeClaude(Agent):
    name = "fake-claude"

    def new_parser(self) -> StreamParser:
        return ClaudeLinesParser()


def script(name: str, *args: str) -> Agent:
    return Agent(command=[sys.executable, str(AGENTS / name), *args])


def run_options(repo: Path, agent: Agent, **options: Any) -> RunOptions:
    settings: dict[str, Any] = dict(
        lease=30.0, backoff=0.05, backoff_max=0.2, kill_grace=1.0, breaker=10, poll=0.05, grace=1.0
    )
    settings.update(options)
    # These tests look at exactly what the agent changed: the RALPH memory is tested on its own.
    settings.setdefault("settings", Settings(progress=None))
    return RunOptions(
        agent=agent,
        agent_name=agent.name or "fake",
        worker="w1",
        prompt=load_prompt(repo),
        commit_message=load_commit_message(None),
        **settings,
    )


def run_loop(repo: Path, store: SQLStore, agent: Agent, **options: Any) -> RunSummary:
    opts = run_options(repo, agent, **options)
    control = RunControl(
        max_tasks=opts.max_tasks,
        max_cost=opts.max_cost,
        max_time=opts.max_time,
        log=lambda line: None,
    )
    workspace = CheckoutWorkspace(repo, ralph_dir=ensure_ralph_dir(repo))
    return run_workers([WorkerLoop(store, workspace, opts, control)], control, handle_signals=False)


def commits(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%s").splitlines()


def pids_dead(pid_file: Path) -> bool:
    for pid in map(int, pid_file.read_text().split()):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # a zombie child of an exited parent is dead too
        status = Path(f"/proc/{pid}/status")
        if status.exists() and "State:\tZ" not in status.read_text():
            return False
    return True


def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_each_task_gets_one_commit_with_trailers_and_is_done(repo: Path, store: SQLStore):
    store.add("First task", id="A")
    store.add("Second task", id="B", blocked_by=["A"])
    store.add("Third task", id="C")

    summary = run_loop(
        repo, store, FakeClaude(command=[sys.executable, str(AGENTS / "claude_stream.py"), "ok"])
    )

    assert summary.exit_code == 0 and summary.done == 3 and summary.commits == 3
    assert commits(repo) == ["Third task", "Second task", "First task", "start"]
    body = git(repo, "log", "-1", "--format=%B", "HEAD~2")
    assert "Task: A\nAgent: fake-claude\nWorker: w1\nCost: $0.0123" in body
    token = store.attempts("A")[0].token
    assert body.rstrip().endswith(f"Ralph-Token: {token}")
    for task_id, ref in (("A", "HEAD~2"), ("B", "HEAD~1"), ("C", "HEAD")):
        assert git(repo, "rev-parse", f"refs/ralph/tasks/{task_id}") == git(repo, "rev-parse", ref)
        assert store.get(task_id).commit_sha == git(repo, "rev-parse", ref).strip()
    assert git(repo, "show", "--format=", "--name-only", "HEAD~2").split() == ["A.txt"]
    assert [t.status for t in store.list()] == ["done"] * 3
    attempt = store.attempts("A")[0]
    assert (attempt.outcome, attempt.cost_usd, attempt.session_id) == ("success", 0.0123, "sess-A")
    run_dir = Path(attempt.run_dir)
    assert {"prompt.md", "stdout", "stderr", "result.json"} <= {p.name for p in run_dir.iterdir()}
    assert "Task A: First task" in (run_dir / "prompt.md").read_text()
    assert json.loads((run_dir / "result.json").read_text())["outcome"] == "success"
    assert summary.cost_usd == pytest.approx(0.0369)
    assert git(repo, "status", "--porcelain") == ""


def test_each_attempt_records_the_model_the_agent_reported_else_the_configured_one(
    repo: Path, store: SQLStore
):
    from ralph.agents.claude import Claude

    store.add("Told", id="A")
    claude = Claude(command=[sys.executable, str(AGENTS / "claude_stream.py")], model="sonnet-4")
    assert run_loop(repo, store, claude).done == 1  # its init event names "claude-fake"
    store.add("Silent", id="B")
    quiet = Agent(command=[sys.executable, str(AGENTS / "edit.py")], model="my-model")
    assert run_loop(repo, store, quiet).done == 1
    store.add("Nothing", id="C")
    assert run_loop(repo, store, script("edit.py")).done == 1
    models = {t: [a.model for a in store.attempts(t)] for t in "ABC"}
    assert models == {"A": ["claude-fake"], "B": ["my-model"], "C": [None]}


def test_task_without_changes_is_done_without_a_commit(repo: Path, store: SQLStore):
    store.add("Nothing to do", id="A")
    summary = run_loop(repo, store, script("noop.py"))
    assert summary.done == 1 and summary.commits == 0
    assert commits(repo) == ["start"]
    assert store.get("A").status == "done"
    assert store.attempts("A")[0].outcome == "no_changes"


def test_no_changes_can_count_as_a_failure(repo: Path, store: SQLStore):
    store.add("Nothing to do", id="A")
    summary = run_loop(repo, store, script("noop.py"), no_changes="fail", max_attempts=1)
    assert summary.failed == 1
    assert store.get("A").status == "failed"


def test_failing_agent_is_retried_with_backoff_then_marked_failed(repo: Path, store: SQLStore):
    store.add("Hard task", id="A")
    summary = run_loop(repo, store, script("fail.py", "3"), max_attempts=3)

    task = store.get("A")
    assert (task.status, task.attempts) == ("failed", 3)
    assert "exited with code 3" in task.last_error and "tests are red" in task.last_error
    attempts = store.attempts("A")
    assert [a.outcome for a in attempts] == ["agent_error"] * 3
    assert all(a.counted for a in attempts)
    # a task counts once in the summary, by how it last ended: 1 failed, not 2 retried + 1
    assert (summary.retried, summary.failed, summary.commits) == (0, 1, 0)
    assert [t.outcome for t in summary.tasks] == ["agent_error"] * 3
    assert summary.exit_code == TasksFailedError.exit_code
    released = [e for e in store.events(task_id="A", kind="released")]
    assert [e.data["retry_in"] > 0 for e in released] == [True, True]
    # The half-done file was not committed and not left behind; its patch was kept.
    assert commits(repo) == ["start"]
    assert git(repo, "status", "--porcelain") == ""
    assert "half-done.txt" in (Path(attempts[0].run_dir) / "changes.patch").read_text()


def test_backoff_grows_exponentially_up_to_its_cap():
    assert [backoff_delay(n, 30, 300) for n in (1, 2, 3, 4, 5)] == [30, 60, 120, 240, 300]


def test_consecutive_failures_open_the_breaker(repo: Path, store: SQLStore):
    for n in range(4):
        store.add(f"Task {n}", id=f"T{n}")
    summary = run_loop(repo, store, script("fail.py"), breaker=2, max_attempts=1)
    assert summary.exit_code == 11
    assert "in a row" in summary.stop_reason
    assert [t.status for t in store.list()] == ["failed", "failed", "open", "open"]


def test_auth_failure_stops_the_run_without_counting_an_attempt(
    repo: Path, store: SQLStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pid_file = tmp_path / "agent.pid"
    monkeypatch.setenv("AGENT_PID_FILE", str(pid_file))
    store.add("Needs the API", id="A")
    store.add("Also needs it", id="B")
    agent = FakeClaude(command=[sys.executable, str(AGENTS / "claude_stream.py"), "auth"])

    summary = run_loop(repo, store, agent)

    assert summary.exit_code == 10
    assert "could not authenticate" in summary.stop_reason
    assert [(t.status, t.attempts, t.claimed_by) for t in store.list()] == [
        ("open", 0, None),
        ("open", 0, None),
    ]
    (attempt,) = store.attempts()
    assert (attempt.outcome, attempt.counted) == ("auth_failed", False)
    assert pids_dead(pid_file)
    assert commits(repo) == ["start"]


def test_rate_limit_pauses_and_retries_without_counting(
    repo: Path, store: SQLStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RATE_MARKER", str(tmp_path / "rate-marker"))
    store.add("Busy API", id="A")
    agent = FakeClaude(command=[sys.executable, str(AGENTS / "claude_stream.py"), "rate"])

    summary = run_loop(repo, store, agent)

    assert summary.exit_code == 0 and summary.done == 1
    first, second = store.attempts("A")
    assert (first.outcome, first.counted) == ("rate_limited", False)
    assert second.outcome == "success"
    assert store.get("A").attempts == 1  # the success; the rate limit counted nothing
    assert commits(repo) == ["Busy API", "start"]


def test_lost_lease_kills_the_agent_and_commits_nothing(
    repo: Path, store: SQLStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pid_file = tmp_path / "agent.pid"
    monkeypatch.setenv("AGENT_PID_FILE", str(pid_file))
    store.add("Long task", id="A")

    def steal() -> None:
        wait_for(pid_file.exists)
        claim = store.active_claim("A")
        store.expire(claim.token, force=True)
        store.claim("A", "thief", lease=600)

    thief = threading.Thread(target=steal)
    thief.start()
    summary = run_loop(repo, store, script("hang.py"), lease=0.6, once=True)
    thief.join()

    (attempt,) = store.attempts("A")
    assert (attempt.outcome, attempt.counted) == ("lease_lost", False)
    task = store.get("A")
    assert (task.status, task.claimed_by, task.attempts) == ("open", "thief", 0)
    assert summary.commits == 0 and commits(repo) == ["start"]
    assert git(repo, "status", "--porcelain") == ""
    assert pids_dead(pid_file)


@pytest.mark.parametrize(
    ("limits", "args", "outcome"),
    [
        ({"task_timeout": 0.5}, (), "timeout"),
        ({"idle_timeout": 0.5}, ("--silent",), "idle_timeout"),
    ],
)
def test_agents_over_their_time_are_killed_and_the_attempt_counts(
    repo: Path,
    store: SQLStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    limits: dict[str, float],
    args: tuple[str, ...],
    outcome: str,
):
    pid_file = tmp_path / "agent.pid"
    monkeypatch.setenv("AGENT_PID_FILE", str(pid_file))
    store.add("Slow task", id="A")
    summary = run_loop(repo, store, script("hang.py", *args), max_attempts=1, **limits)
    (attempt,) = store.attempts("A")
    assert (attempt.outcome, attempt.counted) == (outcome, True)
    assert store.get("A").status == "failed" and summary.failed == 1
    assert pids_dead(pid_file)
    assert git(repo, "status", "--porcelain") == ""


def test_verify_failure_is_retried_with_its_output_in_the_next_prompt(
    repo: Path, store: SQLStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    prompts = tmp_path / "prompts.txt"
    monkeypatch.setenv("RECORD_PROMPTS", str(prompts))
    store.add("Parser", id="A")
    verify = [[sys.executable, str(AGENTS / "verify_second_time.py"), str(tmp_path / "seen")]]

    summary = run_loop(repo, store, script("edit.py"), verify=verify)

    assert summary.done == 1 and commits(repo) == ["Parser", "start"]
    first, second = store.attempts("A")
    assert (first.outcome, second.outcome) == ("verify_failed", "success")
    told = prompts.read_text().split("\n=====\n")
    assert "VERIFY-SAYS-NO" not in told[0]
    assert "Attempt 2" in told[1] and "VERIFY-SAYS-NO: test_parser failed" in told[1]


def test_max_tasks_and_once_stop_cleanly(repo: Path, store: SQLStore):
    for n in range(3):
        store.add(f"Task {n}", id=f"T{n}")
    summary = run_loop(repo, store, script("edit.py"), max_tasks=2)
    assert (summary.exit_code, summary.done) == (0, 2)
    assert "--max-tasks 2" in summary.stop_reason
    summary = run_loop(repo, store, script("edit.py"), once=True)
    assert summary.done == 1
    assert [t.status for t in store.list()] == ["done"] * 3


def test_max_cost_takes_no_new_task_once_spent(repo: Path, store: SQLStore):
    for n in range(3):
        store.add(f"Task {n}", id=f"T{n}")
    agent = FakeClaude(command=[sys.executable, str(AGENTS / "claude_stream.py"), "ok"])
    summary = run_loop(repo, store, agent, max_cost=0.02)
    assert summary.done == 2 and "--max-cost" in summary.stop_reason


def test_a_delayed_task_is_waited_for_not_abandoned(repo: Path, store: SQLStore):
    store.add("Retry soon", id="A")
    claim = store.claim("A", "other", lease=60)
    store.release("A", "other", claim.token, retry_in=0.3)
    summary = run_loop(repo, store, script("edit.py"))
    assert summary.done == 1


def test_tasks_blocked_by_a_failed_task_end_the_run(repo: Path, store: SQLStore):
    store.add("Fails", id="A")
    store.add("Waits on A", id="B", blocked_by=["A"])
    summary = run_loop(repo, store, script("fail.py"), max_attempts=1)
    assert summary.exit_code == TasksFailedError.exit_code == 13 and summary.failed == 1
    assert store.get("B").status == "open"


COMMITTING_AGENT = """
import os, subprocess, sys
from pathlib import Path
sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
Path("first.txt").write_text(task + " first\\n")
subprocess.run(["git", "add", "-A"], check=True)
subprocess.run(["git", "commit", "-qm", "agent step one"], check=True)
subprocess.run(["git", "checkout", "-qb", "agent-branch"], check=True)
Path("second.txt").write_text(task + " second\\n")
subprocess.run(["git", "commit", "-qam", "agent step two", "--allow-empty"], check=True)
Path("uncommitted.txt").write_text("left in the tree\\n")
"""


def test_an_agents_own_commits_and_branch_land_as_one_task_commit_on_the_target(
    repo: Path, store: SQLStore
):
    store.add("Commits by itself", id="A")
    summary = run_loop(repo, store, Agent(command=[sys.executable, "-c", COMMITTING_AGENT]))

    assert summary.done == 1 and summary.commits == 1
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert commits(repo) == ["Commits by itself", "start"]
    assert sorted(git(repo, "show", "--format=", "--name-only", "HEAD").split()) == [
        "first.txt",
        "second.txt",
        "uncommitted.txt",
    ]
    body = git(repo, "log", "-1", "--format=%B")
    assert "- agent step one" in body and "Task: A" in body
    kept = git(repo, "rev-parse", "refs/ralph/attempts/A/1").strip()
    assert git(repo, "log", "--format=%s", "-1", kept).strip() == "agent step two"
    assert git(repo, "status", "--porcelain") == ""


def test_a_task_whose_commit_already_landed_is_completed_without_launching_the_agent(
    repo: Path, store: SQLStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    store.add("Landed before a crash", id="A")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-qm", "Landed before a crash\n\nTask: A")
    sha = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-ref", "refs/ralph/tasks/A", sha)
    pid_file = tmp_path / "agent.pid"
    monkeypatch.setenv("AGENT_PID_FILE", str(pid_file))

    summary = run_loop(repo, store, script("hang.py"))

    assert summary.done == 1 and summary.exit_code == 0
    assert [t.outcome for t in summary.tasks] == ["reconciled"]
    task = store.get("A")
    assert (task.status, task.commit_sha, task.attempts) == ("done", sha, 0)
    assert store.attempts("A") == [] and not pid_file.exists()
    assert commits(repo) == ["Landed before a crash", "start"]


def test_heartbeat_is_a_sixth_of_the_lease_between_half_a_second_and_thirty():
    assert heartbeat_interval(6.0) == 1.0
    assert heartbeat_interval(1.0) == 0.5
    assert heartbeat_interval(1800.0) == 30.0


CONFLICTING_AGENT = """
import os, subprocess, sys
from pathlib import Path
sys.stdin.read()
n = Path(os.environ["RALPH_RUN_DIR"]).name
Path("README.md").write_text(f"the agent's line, run {n}\\n")
common = subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                        capture_output=True, text=True, check=True).stdout.strip()
main = Path(common).parent
(main / "README.md").write_text(f"someone else's line, run {n}\\n")
subprocess.run(["git", "-C", str(main), "commit", "-qam", f"meanwhile {n}"], check=True)
"""


def test_merge_conflicts_have_their_own_budget_and_count_no_attempt(repo: Path, store: SQLStore):
    store.add("Always loses the race", id="A")
    agent = Agent(command=[sys.executable, "-c", CONFLICTING_AGENT])
    opts = run_options(repo, agent, max_attempts=1, max_conflicts=3, resolve="rerun")
    lines: list[str] = []
    control = RunControl(log=lines.append)

    summary = run(
        store,
        opts,
        control,
        names=["w1"],
        repo=repo,
        mode="worktree",
        live=False,
        handle_signals=False,
    )

    assert summary.exit_code == TasksFailedError.exit_code and summary.failed == 1
    assert (summary.launches, summary.conflicts) == (3, 3)  # the summary counts the re-runs
    task = store.get("A")
    assert (task.status, task.attempts) == ("failed", 0)  # max_attempts=1 was never used up
    assert task.last_error.startswith("3 merge conflicts; last: Merge conflict landing on main")
    attempts = store.attempts("A")
    assert [(a.outcome, a.counted) for a in attempts] == [("merge_conflict", False)] * 3
    assert commits(repo) == ["meanwhile 3", "meanwhile 2", "meanwhile 1", "start"]
    for a in attempts:  # each losing attempt's work is kept beside its output
        assert "the agent's line" in (Path(a.run_dir) / "changes.patch").read_text()


def test_each_conflict_gets_one_resolution_and_max_conflicts_still_bounds_the_whole(
    repo: Path, store: SQLStore
):
    # The agent (as the resolver too) moves main under itself every time: each resolution's
    # own landing conflicts again, which is never resolved again but sent back for a re-run.
    store.add("Always loses the race", id="A")
    agent = Agent(command=[sys.executable, "-c", CONFLICTING_AGENT])
    opts = run_options(repo, agent, max_attempts=1, max_conflicts=3)
    control = RunControl(log=lambda line: None)

    summary = run(
        store, opts, control, names=["w1"], repo=repo, mode="worktree", live=False,
        handle_signals=False,
    )  # fmt: skip

    assert summary.exit_code == TasksFailedError.exit_code and summary.failed == 1
    assert (summary.launches, summary.resolutions) == (6, 3)
    task = store.get("A")
    assert (task.status, task.attempts) == ("failed", 0)
    assert task.last_error.startswith("3 merge conflicts; last: Merge conflict landing on main")
    assert "resolution attempt 6 ended merge_conflict" in task.last_error
    kinds = [(a.kind, a.outcome, a.counted) for a in store.attempts("A")]
    assert kinds == [("task", "merge_conflict", False), ("resolve", "merge_conflict", False)] * 3
    assert commits(repo)[0] == "meanwhile 6" and len(commits(repo)) == 7  # nothing of A landed


def test_a_conflict_gone_by_the_time_it_is_resolved_lands_the_task_commit_with_no_agent(
    repo: Path, store: SQLStore
):
    # The resolve lock is held here while the conflicting commit on main is reverted: when the
    # worker gets the lock, the task's commit merges cleanly and lands as it is.
    from ralph.workspace.mergelock import MergeLock

    store.add("Loses the race once", id="A")
    agent = Agent(command=[sys.executable, "-c", CONFLICTING_AGENT])
    opts = run_options(repo, agent)
    control = RunControl(log=lambda line: None)
    done: list[RunSummary] = []
    with MergeLock(repo / ".ralph" / "resolve.lock", timeout=60):
        worker = threading.Thread(
            target=lambda: done.append(
                run(store, opts, control, names=["w1"], repo=repo, mode="worktree",
                    live=False, handle_signals=False)
            )
        )  # fmt: skip
        worker.start()
        deadline = time.monotonic() + 60
        while subprocess.run(
            ["git", "rev-parse", "-q", "--verify", "refs/ralph/attempts/A/1-result"], cwd=repo
        ).returncode:  # the task's result is kept: the worker is at the lock now
            assert time.monotonic() < deadline, "the landing never conflicted"
            time.sleep(0.05)
        git(repo, "revert", "--no-edit", "HEAD")
    worker.join(60)

    assert done and done[0].exit_code == 0 and done[0].resolutions == 0
    assert [(a.kind, a.outcome) for a in store.attempts("A")] == [("task", "success")]
    assert commits(repo)[0] == "Loses the race once"
    assert (repo / "README.md").read_text() == "the agent's line, run 1\n"


def test_a_run_first_completes_tasks_whose_commit_already_landed(repo: Path, store: SQLStore):
    store.add("Landed before a crash", id="A")
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-qm", "Landed before a crash")
    sha = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "update-ref", "refs/ralph/tasks/A", sha)
    lines: list[str] = []
    control = RunControl(log=lines.append)

    summary = run(
        store,
        run_options(repo, script("fail.py")),
        control,
        names=["w1"],
        repo=repo,
        mode="checkout",
        live=False,
        handle_signals=False,
    )

    assert summary.exit_code == 0 and summary.tasks == []  # nothing was claimed
    task = store.get("A")
    assert (task.status, task.commit_sha, task.attempts) == ("done", sha, 0)
    assert any(f"A: its commit {sha[:10]} is on main; marked done" in line for line in lines)
