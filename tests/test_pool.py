"""`ralph run --workers N`: real `ralph` processes, real git worktrees, a scripted agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitutil import git, init_repo

from ralph import errors
from ralph.runner import check_names_free, worker_names
from ralph.store import open_store

AGENT = Path(__file__).parent / "scripts" / "parallel_agent.py"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "repo", {"shared.txt": "base\n"})
    (tmp_path / "ralph.toml").write_text('backoff = "0.1s"\npoll = "0.1s"\n')
    return root


def ralph_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PA_STARTED": str(tmp_path / "started")}
    env.pop("RALPH_DB", None)
    env.update(extra)
    return env


def ralph(repo: Path, *args: str) -> list[str]:
    agent = f"{sys.executable} {AGENT}"
    return [
        sys.executable,
        "-m",
        "ralph",
        *args,
        "--agent-cmd",
        agent,
        "--config",
        str(repo.parent / "ralph.toml"),
    ]


def add_tasks(repo: Path, n: int) -> list[str]:
    with open_store(repo / ".ralph" / "ralph.db") as store:
        return [
            t.id
            for t in store.add_many(
                [{"id": f"t{i:02d}", "title": f"task {i}"} for i in range(1, n + 1)]
            )
        ]


def commits(repo: Path) -> list[dict[str, str]]:
    """Task commits on main, oldest first: subject, trailers and the files each touched."""
    out = []
    for sha in git(repo, "rev-list", "--reverse", "main").split()[1:]:
        body = git(repo, "show", "-s", "--format=%B", sha)
        trailers = dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)
        files = git(repo, "show", "--format=", "--name-only", sha).split()
        files = [f for f in files if f != "progress.md"]  # the RALPH memory rides along
        out.append({"sha": sha, "files": files, **trailers})
    return out


def test_three_workers_twelve_tasks_make_twelve_linear_commits_each_only_its_files(
    repo: Path, tmp_path: Path
) -> None:
    tasks = add_tasks(repo, 12)
    # PA_BARRIER=3: no agent finishes before three have started, so three really ran at once.
    done = subprocess.run(
        ralph(repo, "run", "--workers", "3", "--no-live"),
        cwd=repo,
        env=ralph_env(tmp_path, PA_BARRIER="3"),
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stderr
    made = commits(repo)
    assert sorted(c["Task"] for c in made) == tasks
    assert all(c["files"] == [f"work/{c['Task']}.txt"] for c in made)
    assert git(repo, "rev-list", "--merges", "main") == ""
    assert len({c["Worker"] for c in made}) == 3
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.status_counts()["done"] == 12 and store.claims() == []
        for c in made:  # every landed task has its ref, and the store has the same commit
            assert git(repo, "rev-parse", f"refs/ralph/tasks/{c['Task']}") == c["sha"]
            assert store.get(c["Task"]).commit_sha == c["sha"]
            assert int(c["Ralph-Token"]) > 0
    assert git(repo, "status", "--porcelain") == ""  # the clean checkout followed main
    assert sorted(p.name for p in (repo / ".ralph" / "worktrees").iterdir()) == [
        "worker-1",
        "worker-2",
        "worker-3",
    ]
    assert subprocess.run(["git", "fsck", "--no-progress"], cwd=repo).returncode == 0


def test_same_line_conflict_goes_back_with_the_note_and_succeeds_on_retry(
    repo: Path, tmp_path: Path
) -> None:
    add_tasks(repo, 2)
    prompts = tmp_path / "prompts.txt"
    env = ralph_env(tmp_path, PA_BARRIER="2", PA_FILE="shared.txt", RECORD_PROMPTS=str(prompts))
    done = subprocess.run(
        ralph(repo, "run", "--names", "Alpha,Beta", "--no-live", "--resolve", "rerun"),
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stderr
    assert "Run: 2 done" in done.stdout and "3 agent launches (1 merge conflicts)" in done.stdout
    made = commits(repo)
    assert sorted(c["Task"] for c in made) == ["t01", "t02"]
    assert all(c["files"] == ["shared.txt"] for c in made)
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.status_counts()["done"] == 2
        attempts = store.attempts()
        requeued = [e for e in store.events(kind="released") if "retry_in" in e.data]
        assert [t.attempts for t in store.list()] == [1, 1]  # the successes; no conflict counts
    # the conflict is retried at once from the new target head, not after a failure's backoff,
    # and is not the agent's failure: no attempt is counted (conflicts have their own budget)
    assert [(e.data["retry_in"], e.data["counted"]) for e in requeued] == [(0, False)]
    conflicted = [a for a in attempts if a.outcome == "merge_conflict"]
    assert len(conflicted) == 1 and "shared.txt" in conflicted[0].summary
    assert not conflicted[0].counted
    # the losing attempt's work is kept as a patch in its run folder, not as a branch
    patch = Path(conflicted[0].run_dir) / "changes.patch"
    assert f"{conflicted[0].task_id} by" in patch.read_text()
    assert git(repo, "branch", "--format=%(refname:short)") == "main"
    retry = prompts.read_text().split(f"== {conflicted[0].task_id}\n")[-1]
    assert "Merge conflict" in retry and "shared.txt" in retry
    assert git(repo, "show", "main:shared.txt") == f"{made[-1]['Task']} by {made[-1]['Worker']}"
    assert not (repo / ".git" / "rebase-merge").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_on_run_with_three_workers_releases_every_claim(
    repo: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    add_tasks(repo, 5)
    started = tmp_path / "started"
    proc = subprocess.Popen(
        ralph(repo, "run", "--workers", "3", "--no-live", "--grace", "1s"),
        cwd=repo,
        env=ralph_env(tmp_path, PA_SLEEP="120"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not started.exists() or len(list(started.iterdir())) < 3:
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()

    assert proc.returncode == errors.RunInterruptedError.exit_code, err
    assert f"{signum.name}: taking no new task" in err
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.claims() == []
        assert store.status_counts()["open"] == 5
        assert {w.state() for w in store.workers()} == {"stopped"}
    assert commits(repo) == []
    for wt in (repo / ".ralph" / "worktrees").iterdir():
        assert git(wt, "status", "--porcelain") == ""


def test_sigterm_while_every_worker_is_idle_exits_zero(repo: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        ralph(repo, "run", "--workers", "2", "--watch", "--no-live"),
        cwd=repo,
        env=ralph_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None and time.time() < deadline
            if (repo / ".ralph" / "ralph.db").exists():
                with open_store(repo / ".ralph" / "ralph.db") as store:
                    if len(store.workers()) == 2:
                        break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()

    assert proc.returncode == 0, err  # no agent was cut short: nothing to report as interrupted
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert {w.state() for w in store.workers()} == {"stopped"}


def test_worker_names_default_to_numbered_and_names_must_be_distinct() -> None:
    assert worker_names(3) == ["worker-1", "worker-2", "worker-3"]
    assert worker_names(1, "Alpha, Beta,Gamma") == ["Alpha", "Beta", "Gamma"]
    with pytest.raises(errors.UsageError, match="appears twice"):
        worker_names(2, "Alpha,Alpha")


def test_name_of_a_live_worker_elsewhere_is_refused_but_a_crashed_ones_is_reused(
    tmp_path: Path,
) -> None:
    with open_store(tmp_path / "ralph.db") as store:
        store.register_worker("Alpha", pid=os.getpid(), host=os.uname().nodename)
        with pytest.raises(errors.UsageError, match="Alpha is already running"):
            check_names_free(store, ["Alpha", "Beta"])
        gone = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        ).stdout.strip()
        store.register_worker("Alpha", pid=int(gone), host=os.uname().nodename)
        check_names_free(store, ["Alpha"])


WAKE_AGENT = """
import os, sys, time
from pathlib import Path
task, log, started = os.environ["RALPH_TASK_ID"], Path(sys.argv[1]), Path(sys.argv[2])
deadline = time.time() + 90
if task == "a":  # hold the run until the other worker has said it waits
    while "nothing ready" not in log.read_text():
        if time.time() > deadline:
            sys.exit("the other worker never went idle")
        time.sleep(0.05)
else:  # b and c finish only once both run, so the idle worker must have taken one
    started.mkdir(exist_ok=True)
    (started / task).write_text(os.environ["RALPH_WORKER"])
    while len(list(started.iterdir())) < 2:
        if time.time() > deadline:
            sys.exit("the other worker never took a task")
        time.sleep(0.05)
Path("work").mkdir(exist_ok=True)
Path("work", task + ".txt").write_text(task + "\\n")
"""


def test_an_idle_worker_wakes_when_the_task_it_waits_for_lands_not_at_its_poll(
    repo: Path, tmp_path: Path
) -> None:
    # A one-hour poll: a worker that slept it out would hold the run far past the timeout.
    (tmp_path / "ralph.toml").write_text('poll = "1h"\n')
    with open_store(repo / ".ralph" / "ralph.db") as store:
        store.add("a", id="a")
        store.add_many([{"id": t, "title": t, "blocked_by": ["a"]} for t in ("b", "c")])
    agent, log = tmp_path / "wake_agent.py", tmp_path / "run.log"
    agent.write_text(WAKE_AGENT)
    argv = [sys.executable, "-m", "ralph", "run", "--workers", "2", "--no-live", "--no-sandbox"]
    argv += ["--config", str(tmp_path / "ralph.toml"), "--agent-cmd"]
    argv.append(f"{sys.executable} {agent} {log} {tmp_path / 'started'}")
    with open(log, "w") as err:
        done = subprocess.run(
            argv, cwd=repo, env=ralph_env(tmp_path), stderr=err, text=True, timeout=240
        )

    assert done.returncode == 0, log.read_text()
    idle = [line for line in log.read_text().splitlines() if "nothing ready" in line]
    with open_store(repo / ".ralph" / "ralph.db") as store:
        claims = {e.task_id: e for e in store.events(kind="claimed")}
        landed_a = store.events(task_id="a", kind="done")[0]
        assert {t.id: t.status for t in store.list()} == {"a": "done", "b": "done", "c": "done"}
    waiter = ({"worker-1", "worker-2"} - {claims["a"].worker}).pop()
    assert idle and idle[0].startswith(f"[{waiter}]")  # the line a's agent waited for
    # the waiter's first task came after a landed, and it took one of a's two dependents
    assert {claims["b"].worker, claims["c"].worker} == {"worker-1", "worker-2"}
    assert all(claims[t].id > landed_a.id for t in ("b", "c"))
