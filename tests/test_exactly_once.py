"""Exactly once across the store and git, proven with real processes killed at every step.

Each test kills or stops a real `ralph` process at a chosen point (git's reference-transaction
hook, a `git` wrapper on PATH, SIGKILL/SIGSTOP) and then checks the whole history.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chaos
import pytest
from chaos import RALPH, agent_cmd, chaos_env, check_history, git, install_kill_hook, make_repo

from ralph.store import open_store

ALWAYS = "1.0"


def git_wrapper(tmp_path: Path, script: str) -> Path:
    """A `git` in tmp_path/wrapper (put its folder first on PATH) running `script`, whose
    `{real}` is the real git."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    folder = tmp_path / "wrapper"
    folder.mkdir()
    wrapper = folder / "git"
    wrapper.write_text(script.format(real=real))
    wrapper.chmod(0o755)
    return wrapper


def add_tasks(db: str, specs: list[dict]) -> None:
    with open_store(db) as store:
        store.add_many(specs)


def statuses(db: str) -> dict[str, str]:
    with open_store(db) as store:
        return {t.id: t.status for t in store.list(limit=None)}


def wait_for(check, what: str, timeout: float = 60.0):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


def attempts(db: str, task_id: str) -> list:
    with open_store(db) as store:
        return store.attempts(task_id)


def ended_attempts(db: str, task_id: str, worker: str) -> list:
    """The finished attempts of `worker` at `task_id`: a worker wrote its verdict on them."""
    return [a for a in attempts(db, task_id) if a.ended_at is not None and a.worker == worker]


def workers(db: str) -> list:
    with open_store(db) as store:
        return store.workers()


def holds_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (the merge lock: it is landing or waiting to)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def launches(tmp_path: Path) -> list[str]:
    path = tmp_path / "launches.txt"
    return path.read_text().split("\n")[:-1] if path.exists() else []


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


# -- a crash right after the target moved, once per workspace kind -------------------------


@pytest.mark.parametrize("kind", ["checkout", "worktree", "remote"])
def test_crash_right_after_the_commit_landed_is_completed_without_running_the_agent_again(
    kind: str, tmp_path: Path, repo: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    args = ["run", "--lease", "3s", "--agent-cmd", agent_cmd()]
    hooks_of = repo / ".git"
    if kind == "worktree":
        args += ["--workers", "2", "--no-live"]
    elif kind == "remote":
        bare = tmp_path / "remote.git"
        git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
        git(repo, "remote", "add", "origin", str(bare))
        git(repo, "fetch", "-q", "origin")
        args += ["--remote", "origin"]
        hooks_of = bare  # the kill comes from the remote's own transaction: the push landed
    install_kill_hook(hooks_of)
    add_tasks(db, [{"id": "t1", "title": "first"}, {"id": "t2", "title": "second"}])
    env = chaos_env(tmp_path, db, CHAOS_HOOK_P=ALWAYS, CHAOS_MIN="0", CHAOS_MAX="0")

    first = subprocess.run([*RALPH, *args], cwd=repo, env=env, capture_output=True, timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr.decode()[-2000:]
    landed = git(hooks_of if kind == "remote" else repo, "for-each-ref", "refs/ralph/tasks")
    assert landed.count("refs/ralph/tasks/") == 1  # exactly one task landed, then the kill
    first_landed = landed.rsplit("/", 1)[-1]
    assert list(statuses(db).values()) == ["open", "open"]

    env["CHAOS_HOOK_P"] = ""
    second = subprocess.run([*RALPH, *args], cwd=repo, env=env, capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr.decode()[-2000:]
    assert statuses(db) == {"t1": "done", "t2": "done"}
    where = repo
    if kind == "remote":
        git(repo, "fetch", "-q", "origin", "+refs/ralph/tasks/*:refs/ralph/tasks/*")
        git(repo, "merge", "-q", "--ff-only", "origin/main")
    check_history(where, ["t1", "t2"], Path(db))
    counted = [line.split()[0] for line in launches(tmp_path)]
    assert counted.count(first_landed) == 1  # the landed task's agent never ran again
    assert all(line.endswith(" ok") for line in launches(tmp_path))
    with open_store(db) as store:
        for task in store.list():
            assert task.commit_sha == git(repo, "rev-parse", f"refs/ralph/tasks/{task.id}")


# -- zombies: SIGSTOP past the lease, then SIGCONT -----------------------------------------


def spawn_worker(repo: Path, env: dict[str, str], name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*RALPH, "worker", "start", "--name", name, "--lease", "2s", *extra],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_all(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=60)


def test_zombie_stopped_while_its_agent_works_lands_nothing_and_the_task_has_one_commit(
    tmp_path: Path, repo: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    add_tasks(db, [{"id": "t1", "title": "only"}])
    env = chaos_env(tmp_path, db, CHAOS_MIN="1.5", CHAOS_MAX="1.5")
    zombie = spawn_worker(repo, env, "w1", "--agent-cmd", agent_cmd())
    wait_for(lambda: launches(tmp_path), "the first agent to start")
    os.kill(zombie.pid, signal.SIGSTOP)  # its agent works on; its renewer is frozen
    try:
        healthy = spawn_worker(repo, env, "w2", "--agent-cmd", agent_cmd())
        wait_for(lambda: statuses(db)["t1"] == "done", "w2 to finish t1")
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
    # The zombie wakes up, finds its lease gone and ends its attempt without landing anything
    # (w2 closed that attempt as crashed when it took the task; the zombie's own verdict is
    # written over it).
    wait_for(
        lambda: [a.outcome for a in ended_attempts(db, "t1", "w1")] == ["lease_lost"],
        "the zombie to end its attempt itself",
    )
    stop_all(zombie, healthy)
    check_history(repo, ["t1"], Path(db))
    with open_store(db) as store:
        done = [e for e in store.events(task_id="t1") if e.kind == "done"]
    assert len(done) == 1


GIT_WRAPPER = """#!/bin/sh
# Stops this ralph process (and itself) right before the ref transaction that lands a task:
# after the fence, while holding the merge lock, before the target moves.
case " $* " in
*" update-ref --stdin "*)
    if [ -e "$ZOMBIE_STOP_FILE" ]; then
        rm -f "$ZOMBIE_STOP_FILE"
        echo $$ > "$ZOMBIE_STOP_FILE.pids"
        ps -o ppid= -p $$ | tr -d ' ' >> "$ZOMBIE_STOP_FILE.pids"
        kill -STOP $PPID $$
    fi;;
esac
exec {real} "$@"
"""


def test_zombie_stopped_inside_the_landing_lands_at_most_once(tmp_path: Path, repo: Path) -> None:
    db = str(tmp_path / "ralph.db")
    add_tasks(db, [{"id": "t1", "title": "only"}])
    wrapper_dir = git_wrapper(tmp_path, GIT_WRAPPER).parent
    stop_file = tmp_path / "stop-now"
    stop_file.write_text("")
    env = chaos_env(tmp_path, db, CHAOS_MIN="1.5", CHAOS_MAX="1.5")
    zombie_env = {
        **env,
        "PATH": f"{wrapper_dir}:{env['PATH']}",
        "ZOMBIE_STOP_FILE": str(stop_file),
        "GIT_PYTHON_GIT_EXECUTABLE": str(wrapper_dir / "git"),
        "CHAOS_GATE": str(tmp_path / "w2-is-up"),
    }
    zombie = spawn_worker(repo, zombie_env, "w1", "--agent-cmd", agent_cmd())
    wait_for(lambda: launches(tmp_path), "w1's agent to start")
    # w2 starts now (its start takes the merge lock briefly) and waits idle for work; only
    # then may w1's agent finish, so w1 cannot be stopped holding the lock w2's start needs.
    healthy = spawn_worker(repo, env, "w2", "--agent-cmd", agent_cmd())
    wait_for(lambda: "w2" in {w.name for w in workers(db)}, "w2 to register")
    (tmp_path / "w2-is-up").write_text("")
    pids_file = Path(f"{stop_file}.pids")
    wait_for(lambda: pids_file.exists() and len(pids_file.read_text().split()) == 2, "the stop")
    stopped = [int(p) for p in pids_file.read_text().split()]
    try:  # w1 is stopped holding the merge lock; its lease lapses and w2 takes the task
        wait_for(lambda: len(launches(tmp_path)) == 2, "w2 to run the agent again")
        lock = (repo / ".ralph" / "merge.lock").resolve()
        wait_for(lambda: holds_open(healthy.pid, lock), "w2 to wait for the lock w1 holds")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)  # the zombie's ref transaction goes ahead now
    wait_for(lambda: statuses(db)["t1"] == "done", "t1 to be done")
    # Every holder has written its verdict: the loser's landing is over, not still coming.
    wait_for(lambda: all(a.ended_at for a in attempts(db, "t1")), "every attempt to end")
    stop_all(zombie, healthy)
    check_history(repo, ["t1"], Path(db))  # one commit, whichever of the two landed it


# -- an orphaned agent --------------------------------------------------------------------


def test_orphaned_agent_of_a_killed_worker_writes_into_no_commit(
    tmp_path: Path, repo: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    add_tasks(db, [{"id": "t1", "title": "first"}, {"id": "t2", "title": "second"}])
    env = chaos_env(tmp_path, db)
    orphan_cmd = subprocess.list2cmdline([sys.executable, str(chaos.AGENTS / "orphan_writer.py")])
    worker = spawn_worker(repo, env, "w1", "--agent-cmd", orphan_cmd)
    late = repo / ".ralph" / "worktrees" / "w1" / "out"
    wait_for(lambda: late.is_dir() and any(p.suffix == ".late" for p in late.iterdir()), "orphan")
    os.kill(worker.pid, signal.SIGKILL)  # the worker only: its agent lives on, writing
    worker.wait()
    again = spawn_worker(repo, env, "w1", "--agent-cmd", agent_cmd())
    try:
        wait_for(lambda: set(statuses(db).values()) == {"done"}, "both tasks done", 90)
    finally:
        stop_all(again)
    for sha in git(repo, "rev-list", "main").split():
        files = git(repo, "show", "--name-only", "--format=", sha)
        assert ".late" not in files, f"{sha[:10]} holds the orphan's writes: {files}"


# -- liveness: a slow heartbeat is not death ------------------------------------------------


def test_worker_silent_for_two_heartbeats_but_within_its_lease_keeps_its_claim(
    tmp_path: Path, repo: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    add_tasks(db, [{"id": "t1", "title": "only"}])
    env = chaos_env(tmp_path, db, CHAOS_MIN="1", CHAOS_MAX="1")
    # Lease 30 s: a heartbeat every 5 s, dead after 3 missed beats (15 s). The other worker's
    # short lease makes it sweep every second and heartbeat every half second.
    slow = subprocess.Popen(
        [*RALPH, "worker", "start", "--name", "slow", "--lease", "30s", "--agent-cmd",
         agent_cmd()], cwd=repo, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(lambda: launches(tmp_path), "the agent to start")
    sweeper = subprocess.Popen(
        [*RALPH, "worker", "start", "--name", "sweeper", "--lease", "3s", "--agent-cmd",
         agent_cmd()], cwd=repo, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.kill(slow.pid, signal.SIGSTOP)

    def silent_past_two_beats() -> bool:
        """The sweeper is alive and sweeping more than two beats (and one sweep) after slow's
        last heartbeat, by the store's own clock: the silence the sweeper must tolerate."""
        with open_store(db) as store:
            seen = {w.name: w for w in store.workers()}
        if "slow" not in seen or "sweeper" not in seen:
            return False
        silence = seen["sweeper"].heartbeat_at - seen["slow"].heartbeat_at
        return silence > 2 * seen["slow"].heartbeat_interval + 1.0

    try:
        wait_for(silent_past_two_beats, "more than two missed heartbeats")
    finally:
        os.kill(slow.pid, signal.SIGCONT)
    wait_for(lambda: statuses(db)["t1"] == "done", "t1 to be done", 60)
    stop_all(slow, sweeper)
    with open_store(db) as store:
        kinds = [(e.kind, e.worker) for e in store.events(task_id="t1")]
    assert ("expired", "slow") not in kinds
    assert [w for k, w in kinds if k == "claimed"] == ["slow"]
    assert len(launches(tmp_path)) == 1


# -- conflicts don't burn a task ------------------------------------------------------------

APPENDER = """
import os, sys, time
sys.stdin.read()
time.sleep(0.3)
with open("shared.txt", "a") as fh:
    fh.write(os.environ["RALPH_TASK_ID"] + "\\n")
"""


def test_four_tasks_appending_to_one_file_with_three_workers_all_end_done(
    tmp_path: Path, repo: Path
) -> None:
    (repo / "shared.txt").write_text("start\n")
    git(repo, "add", "shared.txt")
    git(repo, "commit", "-q", "-m", "shared")
    db = str(tmp_path / "ralph.db")
    add_tasks(db, [{"id": f"s{n}", "title": f"append {n}"} for n in range(1, 5)])
    script = tmp_path / "appender.py"
    script.write_text(APPENDER)
    env = chaos_env(tmp_path, db)
    done = subprocess.run(
        [*RALPH, "run", "--workers", "3", "--no-live", "--agent-cmd",
         subprocess.list2cmdline([sys.executable, str(script)])],
        cwd=repo, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert statuses(db) == {f"s{n}": "done" for n in range(1, 5)}
    lines = (repo / "shared.txt").read_text().split()
    assert sorted(lines) == ["s1", "s2", "s3", "s4", "start"]


# -- chaos --------------------------------------------------------------------------------


def chaos_tasks() -> list[dict]:
    specs: list[dict] = [{"id": f"c{n:02d}", "title": f"independent {n}"} for n in range(25)]
    for chain in range(5):
        ids = [f"k{chain}{step}" for step in range(3)]
        for step, task_id in enumerate(ids):
            blocked = [ids[step - 1]] if step else []
            specs.append(
                {"id": task_id, "title": f"chain {chain} step {step}", "blocked_by": blocked}
            )
    return specs


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_chaos_forty_tasks_twenty_kills_every_task_done_once_with_one_commit(
    backend: str, tmp_path: Path, repo: Path, request: pytest.FixtureRequest
) -> None:
    db = str(tmp_path / "ralph.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    specs = chaos_tasks()
    add_tasks(db, specs)
    (repo / "ralph.toml").write_text(chaos.CONFIG)
    git(repo, "add", "ralph.toml")
    git(repo, "commit", "-q", "-m", "config")
    since = git(repo, "rev-parse", "HEAD")
    install_kill_hook(repo / ".git")
    env = chaos_env(tmp_path, db, CHAOS_HOOK_P="0.15", CHAOS_MIN="0.1", CHAOS_MAX="0.8")
    base = ["--lease", "3s", "--agent-cmd", agent_cmd()]
    commands = [
        ["run", "--workers", "3", "--names", "a,b,c", "--no-live", "--watch", *base],
        ["worker", "start", "--name", "h1", *base],
        ["worker", "start", "--name", "h2", *base],
    ]

    def done() -> int:
        return sum(1 for s in statuses(db).values() if s == "done")

    result = chaos.drain_under_fire(
        repo, env, commands=commands, tasks=len(specs), kills=20, seed=7, status=done
    )
    assert result.kills + result.hook_kills >= 20
    assert set(statuses(db).values()) == {"done"}
    sqlite_db = Path(db) if backend == "sqlite" else None
    try:
        check_history(repo, [s["id"] for s in specs], sqlite_db, since)
    except AssertionError:
        with open_store(db) as store:  # what the store says of tasks without exactly one commit
            for spec in specs:
                found = store.events(task_id=spec["id"])
                events = [(e.kind, e.worker, e.token, e.data) for e in found]
                attempts = [(a.outcome, a.summary) for a in store.attempts(spec["id"])]
                print(spec["id"], store.get(spec["id"]).commit_sha, events, attempts)
        raise
    assert result.late == [], f"the agent ran again for landed tasks: {result.late}"
    with open_store(db) as store:
        done_events = [e.task_id for e in store.events(kind="done")]
        assert sorted(done_events) == sorted(s["id"] for s in specs)  # done once each
    print(
        f"chaos[{backend}]: {len(specs)} tasks, {result.kills} random kills + "
        f"{result.hook_kills} kills right after a landing, {result.starts} process starts, "
        f"{sum(result.launches.values())} agent launches "
        f"({sum(result.launches.values()) / len(specs):.2f} per task), {result.wall_s:.0f}s"
    )


# -- a main checkout caught half updated ----------------------------------------------------

HALF_UPDATE_WRAPPER = """#!/bin/sh
# The first index write of a main-checkout update (after the target moved and the files were
# written) does its work and then dies by SIGKILL, as a git killed with its worker's process
# group would.
case " $* " in
*" update-index -z --index-info "*)
    if [ -e "$HALF_FILE" ]; then
        rm -f "$HALF_FILE"
        {real} "$@"
        kill -9 $$
    fi;;
esac
exec {real} "$@"
"""


def run_with_git_wrapper(
    tmp_path: Path, repo: Path, prefix: str, script: str, flag_var: str
) -> tuple[subprocess.CompletedProcess[str], str, Path]:
    """Four tasks run by two workers whose git is `script`, which acts once, while the file
    named by $`flag_var` exists. Returns the run, the store's path and that file."""
    db = str(tmp_path / "ralph.db")
    add_tasks(db, [{"id": f"{prefix}{n}", "title": f"task {n}"} for n in range(4)])
    wrapper = git_wrapper(tmp_path, script)
    flag = tmp_path / "act-now"
    flag.write_text("")
    env = chaos_env(tmp_path, db, CHAOS_MIN="0.1", CHAOS_MAX="0.3")
    env.update({flag_var: str(flag), "PATH": f"{wrapper.parent}:{env['PATH']}"})
    done = subprocess.run(
        [*RALPH, "run", "--workers", "2", "--no-live", "--agent-cmd", agent_cmd()],
        cwd=repo, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    return done, db, flag


def test_main_checkout_update_killed_half_way_is_put_back_and_blocks_nothing(
    tmp_path: Path, repo: Path
) -> None:
    done, db, half = run_with_git_wrapper(tmp_path, repo, "m", HALF_UPDATE_WRAPPER, "HALF_FILE")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not half.exists()  # the kill happened
    assert set(statuses(db).values()) == {"done"}
    check_history(repo, [f"m{n}" for n in range(4)], Path(db))  # includes a clean checkout


GIT_KILLED_AFTER_COMMIT = """#!/bin/sh
# The first ref transaction that moves main commits, then its git dies by SIGKILL (as an OOM
# kill or a stray signal would) while the ralph process that ran it lives on.
case " $* " in
*" update-ref "*"--stdin"*)
    if [ -e "$KILL_FILE" ]; then
        lines="$(mktemp)"
        cat > "$lines"
        if grep -q " refs/heads/main " "$lines"; then
            rm -f "$KILL_FILE"
            {real} "$@" < "$lines"
            rm -f "$lines"
            kill -9 $$
        fi
        exec {real} "$@" < "$lines"
    fi;;
esac
exec {real} "$@"
"""


def test_a_git_killed_after_moving_the_target_leaves_no_stale_main_checkout(
    tmp_path: Path, repo: Path
) -> None:
    """The landing's ref transaction committed, but its git died before exiting: the worker
    sees a failure with the target moved. The main checkout must still follow the target;
    left behind, every later landing would take it for the user's edits and wait forever."""
    done, db, kill = run_with_git_wrapper(tmp_path, repo, "g", GIT_KILLED_AFTER_COMMIT, "KILL_FILE")
    assert not kill.exists()  # the kill happened
    assert done.returncode == 0, done.stderr[-3000:]
    assert "local changes" not in done.stderr
    assert set(statuses(db).values()) == {"done"}
    check_history(repo, [f"g{n}" for n in range(4)], Path(db))  # includes a clean checkout


KILL_GIT_IN_TRANSACTION_HOOK = """#!/bin/sh
# Once, with every lock of the transaction that moves main taken (the branch's and HEAD's, for
# its reflog), SIGKILL the git that took them, as a kill of the worker's process group would.
[ "$1" = prepared ] || exit 0
grep -q " refs/heads/main$" || exit 0
[ -e "$KILL_FILE" ] || exit 0
rm -f "$KILL_FILE"
kill -9 $PPID
exit 0
"""


def test_a_git_killed_holding_the_target_and_head_locks_blocks_no_later_landing(
    tmp_path: Path, repo: Path
) -> None:
    """Stale `refs/heads/main.lock` and `HEAD.lock` from a git killed mid-transaction are
    removed once they are old enough; left, every landing after it failed as a lost race."""
    db = str(tmp_path / "ralph.db")
    add_tasks(db, [{"id": f"h{n}", "title": f"task {n}"} for n in range(3)])
    (repo / "ralph.toml").write_text(chaos.CONFIG)
    git(repo, "add", "ralph.toml")
    git(repo, "commit", "-q", "-m", "config")
    since = git(repo, "rev-parse", "HEAD")
    hook = repo / ".git" / "hooks" / "reference-transaction"
    hook.write_text(KILL_GIT_IN_TRANSACTION_HOOK)
    hook.chmod(0o755)
    kill = tmp_path / "kill-now"
    kill.write_text("")
    env = chaos_env(tmp_path, db, CHAOS_MIN="0.1", CHAOS_MAX="0.3", KILL_FILE=str(kill))
    done = subprocess.run(
        [*RALPH, "run", "--workers", "2", "--no-live", "--agent-cmd", agent_cmd()],
        cwd=repo, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert not kill.exists()  # the kill happened
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(statuses(db).values()) == {"done"}
    assert not list((repo / ".git").glob("*.lock"))
    check_history(repo, [f"h{n}" for n in range(3)], Path(db), since)


ASIDE_KILL_WRAPPER = """#!/bin/sh
# The main checkout's update has renamed a file aside and fetches the new version: SIGKILL the
# ralph process that runs it (git's parent), as a kill of the whole worker would, once.
case " $* " in
*" cat-file blob "*)
    if [ -e "$ASIDE_FILE" ] && ls "$RALPH_TMP"/sync-aside-* >/dev/null 2>&1; then
        rm -f "$ASIDE_FILE"
        kill -9 $PPID
        exit 1
    fi;;
esac
exec {real} "$@"
"""


def test_a_run_killed_while_a_main_checkout_file_is_set_aside_is_finished_by_the_next_run(
    tmp_path: Path, repo: Path
) -> None:
    """Killed between moving a file of the main checkout aside and linking its new version in:
    the file is missing, its bytes in .ralph/tmp. The next run puts them back and finishes
    the update; the file is never taken for the user's deletion (which would make every
    landing wait)."""
    db = str(tmp_path / "ralph.db")
    add_tasks(db, [{"id": f"a{n}", "title": f"task {n}"} for n in range(4)])
    wrapper = git_wrapper(tmp_path, ASIDE_KILL_WRAPPER)
    aside = tmp_path / "aside-now"
    aside.write_text("")
    env = chaos_env(tmp_path, db, CHAOS_MIN="0.1", CHAOS_MAX="0.3")
    env.update(ASIDE_FILE=str(aside), RALPH_TMP=str(repo / ".ralph" / "tmp"))
    argv = [*RALPH, "run", "--workers", "2", "--no-live", "--agent-cmd", agent_cmd()]
    killed = subprocess.run(
        argv, cwd=repo, env={**env, "PATH": f"{wrapper.parent}:{env['PATH']}"},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert killed.returncode == -9 and not aside.exists(), killed.stderr[-3000:]  # it happened
    done = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "local changes" not in done.stderr and "kept your uncommitted" not in done.stderr
    assert set(statuses(db).values()) == {"done"}
    check_history(repo, [f"a{n}" for n in range(4)], Path(db))  # includes a clean checkout


FAILING_COMMIT_TREE = """#!/bin/sh
# The first `commit-tree` (building a task's commit) dies by SIGKILL, as a git killed with its
# worker's process group would.
case " $* " in
*" commit-tree "*)
    if [ -e "$FAIL_FILE" ]; then
        rm -f "$FAIL_FILE"
        kill -9 $$
    fi;;
esac
exec {real} "$@"
"""


def test_a_git_failure_while_landing_is_a_counted_attempt_never_done_without_a_commit(
    tmp_path: Path, repo: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    add_tasks(db, [{"id": "t1", "title": "only"}])
    (repo / "ralph.toml").write_text(chaos.CONFIG)
    git(repo, "add", "ralph.toml")
    git(repo, "commit", "-q", "-m", "config")
    since = git(repo, "rev-parse", "HEAD")
    wrapper = git_wrapper(tmp_path, FAILING_COMMIT_TREE)
    fail = tmp_path / "fail-now"
    fail.write_text("")
    env = chaos_env(tmp_path, db, CHAOS_MIN="0", CHAOS_MAX="0")
    env.update(FAIL_FILE=str(fail), PATH=f"{wrapper.parent}:{env['PATH']}")
    run = subprocess.run(
        [*RALPH, "run", "--workers", "2", "--no-live", "--agent-cmd", agent_cmd()],
        cwd=repo, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert not fail.exists()  # the landing's git died
    assert run.returncode == 0, run.stderr[-3000:]  # one task's retry, not a crashed run
    with open_store(db) as store:
        assert [a.outcome for a in store.attempts("t1")] == ["git_failed", "success"]
        assert store.get("t1").attempts == 2  # the failed landing counted
    assert statuses(db) == {"t1": "done"}
    assert len(launches(tmp_path)) == 2
    check_history(repo, ["t1"], Path(db), since=since)
