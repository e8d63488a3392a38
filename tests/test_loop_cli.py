"""`ralph run`, `ralph demo` and `ralph worker start` as real subprocesses: signals, bad input,
memory, exit codes."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ralph.store import open_store
from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env["HOME"] = str(tmp_path / "home")
    return env


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    (root / "README.md").write_text("hello\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "start")
    subprocess.run(
        [*RALPH, "add", "First task", "--id", "A"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    return root


def agent_cmd(name: str, *args: str) -> str:
    return shlex.join([sys.executable, str(AGENTS / name), *args])


def lines_of(stream) -> tuple[list[str], threading.Thread]:  # noqa: ANN001
    """Read `stream` line by line on a thread; the list fills as the process writes."""
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(iter(stream.readline, "")))
    reader.start()
    return said, reader


def wait_said(said: list[str], words: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(words in line for line in said):
        assert time.monotonic() < deadline and proc.poll() is None, said
        time.sleep(0.05)


def ralph(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_ralph(*args, cwd=root, env=env, timeout=120)


def test_run_commits_each_task_and_prints_a_json_summary(repo: Path, env: dict[str, str]):
    result = ralph(repo, env, "run", "--agent-cmd", agent_cmd("edit.py"), "--json", "-q")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["commits"], summary["exit_code"]) == (1, 1, 0)
    assert git(repo, "log", "-1", "--format=%s") == "First task\n"
    assert "Task: A" in git(repo, "log", "-1", "--format=%b")


@pytest.mark.parametrize(("grace", "signals"), [("1s", 1), ("10m", 2)])
def test_sigterm_during_an_agent_releases_the_claim_and_commits_nothing(
    repo: Path, env: dict[str, str], tmp_path: Path, grace: str, signals: int
):
    """One SIGTERM gives the agent its grace period; a second one kills it at once."""
    pid_file = tmp_path / "agent.pid"
    env["AGENT_PID_FILE"] = str(pid_file)
    proc = subprocess.Popen(
        [*RALPH, "run", "--agent-cmd", agent_cmd("hang.py"), "--grace", grace],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    said, reader = lines_of(proc.stderr)
    proc.send_signal(signal.SIGTERM)
    if signals == 2:
        wait_said(said, "taking no new task", proc)  # the first one was heard
        assert proc.poll() is None  # still inside the agent's ten minutes of grace
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    reader.join(timeout=60)
    err = "".join(said)

    assert proc.returncode == 12, err
    assert "SIGTERM" in err
    with open_store(repo / ".ralph" / "ralph.db") as store:
        task = store.get("A")
        assert (task.status, task.attempts, task.claimed_by) == ("open", 0, None)
        assert store.active_claim("A") is None
        (attempt,) = store.attempts("A")
        assert (attempt.outcome, attempt.counted) == ("interrupted", False)
    assert git(repo, "log", "--format=%s") == "start\n"
    assert git(repo, "status", "--porcelain") == ""
    for pid in map(int, pid_file.read_text().split()):
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "State:\tZ" in status.read_text()


@pytest.mark.parametrize(
    ("args", "setup", "code", "words"),
    [
        (["--agent", "no-such-agent"], None, 8, "unknown agent 'no-such-agent'"),
        (["--agent-cmd", "definitely-not-installed-xyz --go"], None, 8, "not on PATH"),
        (["--agent", "claude", "--agent-cmd", "x"], None, 2, "either --agent or --agent-cmd"),
        (["--prompt", "broken.j2"], "broken", 8, "broken.j2:2"),
        (["--prompt", "missing-var.j2"], "missing-var", 8, "'nope' is undefined"),
        ([], "dirty", 9, "uncommitted changes"),
        (["--lease", "soon"], None, 2, "invalid --lease 'soon'"),
        (["--task-timeout", "-3m"], None, 2, "invalid --task-timeout"),
        ([], "bad-config", 8, "unknown key 'agnet'"),
    ],
)
def test_bad_input_is_one_line_before_anything_runs(
    repo: Path, env: dict[str, str], args, setup, code, words
):
    if setup == "broken":
        (repo / "broken.j2").write_text("Task {{ task.id }}\n{% if %}\n")
    elif setup == "missing-var":
        (repo / "missing-var.j2").write_text("Task {{ task.id }} {{ nope }}\n")
    elif setup == "dirty":
        (repo / "README.md").write_text("changed\n")
    elif setup == "bad-config":
        (repo / "ralph.toml").write_text('agnet = "claude"\n')
    if setup in ("broken", "missing-var", "bad-config"):
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", "setup")
    before = git(repo, "log", "--format=%H")
    if not any(a.startswith("--agent") for a in args):
        args = ["--agent-cmd", agent_cmd("edit.py"), *args]
    result = ralph(repo, env, "run", *args)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert git(repo, "log", "--format=%H") == before
    assert not (repo / ".ralph" / "runs").exists()
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.get("A").status == "open" and store.attempts() == []
        assert [e.kind for e in store.events()] == ["created"]


def test_not_a_git_repository_is_refused_and_nothing_is_created(
    tmp_path: Path, env: dict[str, str]
):
    folder = tmp_path / "plain"
    folder.mkdir()
    result = ralph(folder, env, "run", "--agent-cmd", agent_cmd("edit.py"))
    assert result.returncode == 9
    assert "not inside a git repository" in result.stderr
    assert list(folder.iterdir()) == []


def test_output_of_100_mb_does_not_grow_memory(repo: Path, env: dict[str, str]):
    code = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(r.returncode)\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            *RALPH,
            "run",
            "-q",
            "--agent-cmd",
            agent_cmd("flood.py", "100"),
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    peak_kb = int(result.stdout.strip().splitlines()[-1])
    assert peak_kb < 150 * 1024, f"peak RSS {peak_kb} kB"
    assert (repo / ".ralph" / "runs" / "A" / "1" / "stdout").stat().st_size == 100 * 1024 * 1024
    assert git(repo, "log", "-1", "--format=%s") == "First task\n"


def test_dry_run_prints_argv_and_prompt_and_claims_nothing(repo: Path, env: dict[str, str]):
    result = ralph(repo, env, "run", "--dry-run", "--agent-cmd", agent_cmd("edit.py"))
    assert result.returncode == 0, result.stderr
    assert "edit.py" in result.stdout and "# Task A: First task" in result.stdout
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert [e.kind for e in store.events()] == ["created"]


def test_demo_makes_one_commit_per_task(tmp_path: Path, env: dict[str, str]):
    target = tmp_path / "demo"
    result = subprocess.run(
        [*RALPH, "demo", str(target)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    subjects = git(target, "log", "--format=%s").splitlines()
    assert len(subjects) == 6 and subjects[-1] == "Start the demo project"
    assert "Write the release notes" in result.stdout
    with open_store(target / ".ralph" / "ralph.db") as store:
        assert [t.status for t in store.list()] == ["done"] * 5
    assert sorted(p.name for p in (target / "work").iterdir()) == [f"T{n}.md" for n in range(1, 6)]
    assert git(target, "rev-list", "--merges", "HEAD") == ""
    tasks = git(target, "log", "--format=%(trailers:key=Task,valueonly)").split()
    assert sorted(tasks) == [f"T{n}" for n in range(1, 6)]
    workers = set(git(target, "log", "--format=%(trailers:key=Worker,valueonly)").split())
    assert workers and workers <= {"Alpha", "Beta", "Gamma"}


def test_worker_start_runs_under_its_name_until_stopped(repo: Path, env: dict[str, str]):
    proc = subprocess.Popen(
        [*RALPH, "worker", "start", "--name", "implementer-1", "--agent-cmd", agent_cmd("edit.py")],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said, reader = lines_of(proc.stderr)
    wait_said(said, "done A (", proc)  # logged once the task is over, its commit landed
    # --watch: the queue ran dry and it waits for work; a task added now is its next one.
    assert ralph(repo, env, "add", "Later task", "--id", "B").returncode == 0
    wait_said(said, "done B (", proc)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    reader.join(timeout=30)
    assert proc.returncode == 0  # stopped while idle: nothing was cut short
    assert "Worker: implementer-1" in git(repo, "log", "-1", "--format=%b")


def test_auth_failure_through_the_command_adapter_stops_with_exit_10(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    subprocess.run(
        [*RALPH, "add", "Second task", "--id", "B"],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    result = ralph(repo, env, "run", "--agent-cmd", agent_cmd("claude_stream.py", "auth"))
    assert result.returncode == 10, result.stderr
    assert "could not authenticate" in result.stderr.splitlines()[-1]
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert [(t.status, t.attempts) for t in store.list()] == [("open", 0), ("open", 0)]
        (attempt,) = store.attempts()
        assert (attempt.outcome, attempt.counted) == ("auth_failed", False)
    assert git(repo, "log", "--format=%s") == "start\n"


def test_pause_from_the_cli_holds_every_worker_until_resume(repo: Path, env: dict[str, str]):
    paused = ralph(repo, env, "pause", "--reason", "deploying")
    assert paused.returncode == 0 and "deploying" in paused.stdout
    proc = subprocess.Popen(
        [*RALPH, "worker", "start", "--name", "w", "--agent-cmd", agent_cmd("edit.py")],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    said, reader = lines_of(proc.stderr)
    try:
        with open_store(repo / ".ralph" / "ralph.db") as store:
            # The worker says so when it finds the pause where it would claim: it got there.
            wait_said(said, "paused by cli: deploying", proc)
            assert "claimed" not in [e.kind for e in store.events(task_id="A")]
            resumed = ralph(repo, env, "resume")
            assert resumed.returncode == 0 and "Resumed" in resumed.stdout
            deadline = time.monotonic() + 60
            while store.get("A").status != "done":
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=30)
    err = "".join(said)
    assert "paused by cli: deploying" in err
    assert ralph(repo, env, "resume").stdout.strip() == "Nothing was paused"
