"""Git across hosts: two clones of one bare remote, worker processes pushing task commits to it.

A "host" is a clone in tmp_path with its own `ralph worker start --remote origin` process; both
share one task store (a SQLite file, or PostgreSQL through the `pg_url` fixture).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ralph import errors
from ralph.config import parse_settings
from ralph.store import ensure_ralph_dir, open_store
from ralph.store.base import SQLStore
from ralph.workspace.base import Collected, Fence, Landing
from ralph.workspace.remote import RemoteWorktrees
from ralph.workspace.worktree import WorktreeWorkspace

AGENT = Path(__file__).parent / "scripts" / "parallel_agent.py"
RUN_TIMEOUT = 120


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def clone(remote: Path, dest: Path) -> Path:
    git(remote.parent, "clone", "-q", str(remote), str(dest))
    git(dest, "config", "user.name", dest.name)
    git(dest, "config", "user.email", f"{dest.name}@example.invalid")
    return dest


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository with one commit on main (shared.txt, README.md)."""
    seed = tmp_path / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    git(seed, "config", "user.name", "Seed")
    git(seed, "config", "user.email", "seed@example.invalid")
    (seed / "shared.txt").write_text("base\n")
    (seed / "README.md").write_text("demo\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "start")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    (tmp_path / "ralph.toml").write_text('backoff = "0.1s"\npoll = "0.1s"\n')
    return bare


@pytest.fixture
def hosts(tmp_path: Path, remote: Path) -> tuple[Path, Path]:
    return clone(remote, tmp_path / "hostA"), clone(remote, tmp_path / "hostB")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The one task store both hosts use."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / "shared.db")


def remote_commits(remote: Path) -> list[dict[str, str]]:
    """Task commits on the remote's main, oldest first: trailers and the files each touched."""
    out = []
    for sha in git(remote, "rev-list", "--reverse", "main").split()[1:]:
        body = git(remote, "show", "-s", "--format=%B", sha)
        trailers = dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)
        files = git(remote, "show", "--format=", "--name-only", sha).split()
        files = [f for f in files if f != "progress.md"]  # the RALPH memory rides along
        out.append({"sha": sha, "files": files, **trailers})
    return out


def start_worker(
    host: Path, name: str, caps: str, db: str, tmp_path: Path, *extra: str, **env: str
) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "ralph",
        "worker",
        "start",
        "--name",
        name,
        "--capabilities",
        caps,
        "--remote",
        "origin",
        "--lease",
        "20s",
        "--agent-cmd",
        f"{sys.executable} {AGENT}",
        "--config",
        str(tmp_path / "ralph.toml"),
        *extra,
    ]
    full_env = {**os.environ, "HOME": str(tmp_path / "home"), "RALPH_DB": db, **env}
    return subprocess.Popen(
        argv, cwd=host, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def drain(db: str, procs: list[subprocess.Popen[str]], total: int) -> list[tuple[int, str, str]]:
    """Wait until `total` tasks are done and every worker's heartbeat says idle, then SIGTERM
    them; (rc, out, err) each."""
    deadline = time.time() + RUN_TIMEOUT

    def idle(store: SQLStore) -> bool:
        workers = store.workers()
        return len(workers) == len(procs) and all(
            w.status == "idle" and w.current_task is None for w in workers
        )

    try:
        with open_store(db) as store:
            while store.status_counts().get("done", 0) < total or not idle(store):
                dead = [p for p in procs if p.poll() is not None]
                assert not dead, dead[0].communicate()[1]
                assert time.time() < deadline, "the queue was not drained in time"
                time.sleep(0.1)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        return [(p.wait(60), *p.communicate()) for p in procs]
    finally:
        for proc in procs:
            proc.kill()


def assert_clean_exit(results: list[tuple[int, str, str]], db: str) -> None:
    for rc, out, err in results:
        assert rc == 0, err  # stopped while idle: no agent was cut short
        assert "Traceback" not in err and "Run: " in out, err
    with open_store(db) as store:
        assert store.claims() == []
        assert {w.state() for w in store.workers()} == {"stopped"}


def test_two_hosts_drain_a_shared_queue_one_linear_commit_per_task_on_the_remote(
    hosts: tuple[Path, Path], remote: Path, tmp_path: Path, db: str
) -> None:
    host_a, host_b = hosts
    specs = [
        {"id": "a1", "title": "only A", "requires": ["a"]},
        {"id": "a2", "title": "only A", "requires": ["a"]},
        {"id": "a3", "title": "only A", "requires": ["a"]},
        {"id": "b1", "title": "only B", "requires": ["b"]},
        {"id": "b2", "title": "only B", "requires": ["b"]},
        {"id": "b3", "title": "only B", "requires": ["b"]},
        {"id": "s1", "title": "either", "requires": ["shared"]},
        {"id": "s2", "title": "either", "requires": ["shared"]},
    ]
    with open_store(db) as store:
        store.add_many(specs)
    env = {"PA_STARTED": str(tmp_path / "started"), "PA_BARRIER": "2"}
    procs = [
        start_worker(host_a, "hostA", "a,shared", db, tmp_path, **env),
        start_worker(host_b, "hostB", "b,shared", db, tmp_path, **env),
    ]
    results = drain(db, procs, len(specs))

    assert_clean_exit(results, db)
    made = remote_commits(remote)
    assert sorted(c["Task"] for c in made) == sorted(s["id"] for s in specs)  # one commit each
    assert all(c["files"] == [f"work/{c['Task']}.txt"] for c in made)
    assert {c["Worker"] for c in made if c["Task"].startswith("a")} == {"hostA"}
    assert {c["Worker"] for c in made if c["Task"].startswith("b")} == {"hostB"}
    assert git(remote, "rev-list", "--merges", "main") == ""
    on_remote = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert {f"work/{s['id']}.txt" for s in specs} <= set(on_remote)  # none lost
    with open_store(db) as store:
        done = [e.task_id for e in store.events(kind="done")]
        assert sorted(done) == sorted(s["id"] for s in specs)  # each done once
        assert {a.outcome for a in store.attempts()} == {"success"}
    # Each clean main checkout followed the remote up to its own last push (an idle host
    # fetches again only when it takes its next task); the last one to push is at the head.
    heads = [git(host, "rev-parse", "main") for host in hosts]
    assert git(remote, "rev-parse", "main") in heads
    for host, head in zip(hosts, heads, strict=True):
        git(remote, "merge-base", "--is-ancestor", head, "main")
        assert head != made[0]["sha"] and git(host, "status", "--porcelain") == ""


def write_hook(host: Path, name: str, body: str) -> None:
    hook = host / ".git" / "hooks" / name
    hook.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    hook.chmod(0o755)


def test_push_race_second_host_is_rejected_then_rebases_and_pushes_again(
    hosts: tuple[Path, Path], remote: Path, tmp_path: Path
) -> None:
    host_a, host_b = hosts
    db = str(tmp_path / "shared.db")
    with open_store(db) as store:
        store.add_many(
            [
                {"id": "ta", "title": "A's", "requires": ["a"]},
                {"id": "tb", "title": "B's", "requires": ["b"]},
            ]
        )
    # Both agents finish together (barrier). B's first push then waits in pre-push until A's
    # commit is on the remote, and A pushes only once B is waiting: B's push, computed against
    # the old head, must be refused; its retry has to fetch and rebase onto A's commit.
    flags = tmp_path / "flags"
    flags.mkdir()
    write_hook(
        host_b,
        "pre-push",
        f"""
        import subprocess, sys, time
        from pathlib import Path
        flags = Path({str(flags)!r})
        with open(flags / "b-pushes", "a") as fh:
            fh.write("push\\n")
        if (flags / "b-waited").exists():
            sys.exit(0)
        (flags / "b-waited").touch()
        deadline = time.time() + 60
        while time.time() < deadline:
            count = subprocess.run(["git", "--git-dir", {str(remote)!r}, "rev-list", "--count",
                                    "main"], capture_output=True, text=True).stdout.strip()
            if count == "2":
                sys.exit(0)
            time.sleep(0.05)
        sys.exit("A never pushed")
        """,
    )
    write_hook(
        host_a,
        "pre-push",
        f"""
        import sys, time
        from pathlib import Path
        deadline = time.time() + 60
        while not (Path({str(flags)!r}) / "b-waited").exists():
            if time.time() > deadline:
                sys.exit("B never pushed")
            time.sleep(0.05)
        """,
    )
    env = {"PA_STARTED": str(tmp_path / "started"), "PA_BARRIER": "2"}
    procs = [
        start_worker(host_a, "hostA", "a", db, tmp_path, **env),
        start_worker(host_b, "hostB", "b", db, tmp_path, **env),
    ]
    results = drain(db, procs, 2)

    assert_clean_exit(results, db)
    assert (flags / "b-pushes").read_text() == "push\npush\n"  # refused once, then sent again
    made = remote_commits(remote)
    assert [c["Task"] for c in made] == ["ta", "tb"]  # B's landed on top of A's
    assert git(remote, "rev-list", "--merges", "main") == ""
    with open_store(db) as store:
        outcomes = sorted((a.task_id, a.outcome) for a in store.attempts())
        assert outcomes == [("ta", "success"), ("tb", "success")]  # the retry cost no attempt


def test_same_line_edits_on_two_hosts_one_lands_other_retries_with_the_conflict_note(
    hosts: tuple[Path, Path], remote: Path, tmp_path: Path
) -> None:
    host_a, host_b = hosts
    db = str(tmp_path / "shared.db")
    with open_store(db) as store:
        store.add_many(
            [
                {"id": "ta", "title": "A's", "requires": ["a"]},
                {"id": "tb", "title": "B's", "requires": ["b"]},
            ]
        )
    prompts = tmp_path / "prompts.txt"
    env = {
        "PA_STARTED": str(tmp_path / "started"),
        "PA_BARRIER": "2",
        "PA_FILE": "shared.txt",
        "RECORD_PROMPTS": str(prompts),
    }
    procs = [
        start_worker(host_a, "hostA", "a", db, tmp_path, "--resolve", "rerun", **env),
        start_worker(host_b, "hostB", "b", db, tmp_path, "--resolve", "rerun", **env),
    ]
    results = drain(db, procs, 2)

    assert_clean_exit(results, db)
    made = remote_commits(remote)
    assert sorted(c["Task"] for c in made) == ["ta", "tb"]
    assert all(c["files"] == ["shared.txt"] for c in made)
    with open_store(db) as store:
        attempts = store.attempts()
    conflicted = [a for a in attempts if a.outcome == "merge_conflict"]
    assert len(conflicted) == 1 and "shared.txt" in (conflicted[0].summary or "")
    loser = conflicted[0].task_id
    retry = prompts.read_text().split(f"== {loser}\n")[-1]
    assert "Merge conflict landing on main" in retry and "shared.txt" in retry
    assert made[-1]["Task"] == loser  # it succeeded on the attempt after the conflict
    assert git(remote, "show", "main:shared.txt") == f"{loser} by {made[-1]['Worker']}"
    for host in hosts:
        assert not (host / ".git" / "rebase-merge").exists()


def test_same_line_edits_on_two_hosts_are_resolved_on_the_fetched_remote_head_no_rerun(
    hosts: tuple[Path, Path], remote: Path, tmp_path: Path
) -> None:
    # The scripted agent, launched again as the resolver, rewrites shared.txt whole (markers
    # gone): a resolution that keeps its own side, landed on top of the other host's commit.
    host_a, host_b = hosts
    db = str(tmp_path / "shared.db")
    with open_store(db) as store:
        store.add_many(
            [
                {"id": "ta", "title": "A's", "requires": ["a"]},
                {"id": "tb", "title": "B's", "requires": ["b"]},
            ]
        )
    env = {"PA_STARTED": str(tmp_path / "started"), "PA_BARRIER": "2", "PA_FILE": "shared.txt"}
    procs = [
        start_worker(host_a, "hostA", "a", db, tmp_path, **env),
        start_worker(host_b, "hostB", "b", db, tmp_path, **env),
    ]
    results = drain(db, procs, 2)

    assert_clean_exit(results, db)
    made = remote_commits(remote)
    assert sorted(c["Task"] for c in made) == ["ta", "tb"]
    assert git(remote, "rev-list", "--merges", "main") == ""
    with open_store(db) as store:
        kinds = sorted((a.kind, a.outcome) for a in store.attempts())
        resolved = next(a for a in store.attempts() if a.kind == "resolve")
    assert kinds == [("resolve", "success"), ("task", "success"), ("task", "success")]
    assert made[-1]["Task"] == resolved.task_id and "Conflict-Resolved-By" in made[-1]
    assert made[0]["sha"] == git(remote, "rev-parse", "main~1")  # on the other host's commit
    assert "<<<<<<<" not in git(remote, "show", "main:shared.txt")
    for host in hosts:
        assert not (host / ".git" / "rebase-merge").exists()


# -- RemoteWorktrees in-process: the fence, fetch-first rejections, review branches -------------


def no_fence() -> None:
    """The claim is still ours."""


def work(
    wt: RemoteWorktrees, worker: str, task: str, files: dict[str, str]
) -> tuple[WorktreeWorkspace, Collected]:
    """What a worker does for a task: a clean start at the remote's head, edits, collected."""
    ws = wt.workspace(worker, wait=lambda seconds: not time.sleep(min(seconds, 0.01)))
    base = ws.prepare(task, 1, wt.ralph_dir / "runs" / task / "1")
    for name, text in files.items():
        (ws.path / name).parent.mkdir(parents=True, exist_ok=True)
        (ws.path / name).write_text(text)
    return ws, ws.collect(task, 1, base)


def land(
    ws: WorktreeWorkspace, task: str, collected: Collected, fence: Fence = no_fence
) -> Landing:
    return ws.land(task, collected, f"task {task}\n\nTask: {task}\n", fence)


def test_push_refused_as_fetch_first_is_fetched_merged_and_pushed_again(
    hosts: tuple[Path, Path], remote: Path
) -> None:
    a = RemoteWorktrees(hosts[0], "origin", ralph_dir=ensure_ralph_dir(hosts[0]), retry_wait=0.01)
    b = RemoteWorktrees(hosts[1], "origin", ralph_dir=ensure_ralph_dir(hosts[1]), retry_wait=0.01)
    a.start(["w"]), b.start(["w"])
    ws_a, ta = work(a, "w", "ta", {"work/ta.txt": "a\n"})
    ws_b, tb = work(b, "w", "tb", {"work/tb.txt": "b\n"})
    fenced: list[str] = []

    def a_pushes_first() -> None:  # B has fetched; A wins the race right now
        fenced.append(land(ws_a, "ta", ta).status if not fenced else "ours")

    result = land(ws_b, "tb", tb, a_pushes_first)

    assert result.status == "landed", result.note
    assert fenced == ["landed", "ours"]  # B's first push was refused; it fetched and went again
    assert git(remote, "log", "--format=%s", "main").splitlines() == ["task tb", "task ta", "start"]
    assert git(remote, "rev-parse", "refs/ralph/tasks/tb") == result.commit
    assert git(hosts[1], "rev-parse", "main") == result.commit  # B's clean checkout followed
    assert git(hosts[1], "rev-parse", "refs/ralph/tasks/tb") == result.commit


def test_push_refused_every_time_ends_push_failed_and_pushes_nothing(
    hosts: tuple[Path, Path], remote: Path
) -> None:
    a = RemoteWorktrees(hosts[0], "origin", ralph_dir=ensure_ralph_dir(hosts[0]), retry_wait=0.01)
    b = RemoteWorktrees(hosts[1], "origin", ralph_dir=ensure_ralph_dir(hosts[1]), retry_wait=0.01)
    b.race_limit = 2
    a.start(["w"]), b.start(["w"])
    pushed_by_a: list[str] = []

    def a_always_pushes_first() -> None:
        n = len(pushed_by_a)
        ws, collected = work(a, "w", f"a{n}", {f"work/a{n}.txt": "a\n"})
        pushed_by_a.append(land(ws, f"a{n}", collected).status)

    ws_b, tb = work(b, "w", "tb", {"work/tb.txt": "b\n"})
    result = land(ws_b, "tb", tb, a_always_pushes_first)

    assert pushed_by_a == ["landed", "landed"]
    assert result.status == "push_failed" and "lost the race to land 2 times" in result.note
    assert "tb" not in git(remote, "log", "--format=%s", "main")
    assert b.landed("tb") is None
    assert git(remote, "for-each-ref", "refs/ralph/tasks/tb") == ""


def test_a_task_another_host_landed_is_found_on_the_remote_and_not_pushed_again(
    hosts: tuple[Path, Path], remote: Path
) -> None:
    a = RemoteWorktrees(hosts[0], "origin", ralph_dir=ensure_ralph_dir(hosts[0]))
    b = RemoteWorktrees(hosts[1], "origin", ralph_dir=ensure_ralph_dir(hosts[1]))
    a.start(["w"]), b.start(["w"])
    ws_a, first = work(a, "w", "t1", {"work/t1.txt": "from A\n"})
    ws_b, second = work(b, "w", "t1", {"work/t1.txt": "from B\n"})  # B took the task over

    landed = land(ws_a, "t1", first)

    assert b.landed("t1") == landed.commit  # asked of the remote: B has not fetched it
    again = land(ws_b, "t1", second)
    assert (again.status, again.commit) == ("already", landed.commit)
    assert git(remote, "log", "--format=%s", "main").splitlines() == ["task t1", "start"]
    assert git(remote, "show", "main:work/t1.txt") == "from A"


def test_remote_without_the_target_branch_fails_at_start_saying_how_to_push_it(
    hosts: tuple[Path, Path],
) -> None:
    git(hosts[0], "branch", "release")
    wt = RemoteWorktrees(hosts[0], "origin", ralph_dir=ensure_ralph_dir(hosts[0]), target="release")

    with pytest.raises(errors.WorkspaceError, match="origin has no branch release") as caught:
        wt.start(["w"])

    assert caught.value.hint == "push it once: git push origin release"


def test_remote_config_key_is_read_and_must_be_a_name() -> None:
    assert parse_settings({"remote": "origin"}).remote == "origin"
    with pytest.raises(errors.ConfigError, match="remote must be a non-empty string"):
        parse_settings({"remote": ""})


def test_lost_lease_before_the_push_pushes_nothing(hosts: tuple[Path, Path], remote: Path) -> None:
    wt = RemoteWorktrees(hosts[0], "origin", ralph_dir=ensure_ralph_dir(hosts[0]))
    wt.start(["w"])
    ws, collected = work(wt, "w", "t1", {"work/t1.txt": "x\n"})
    before = git(remote, "rev-parse", "main")

    def zombie() -> None:
        raise errors.LeaseLostError("t1 is held by w2 now (token 2)")

    with pytest.raises(errors.LeaseLostError, match="w2"):
        land(ws, "t1", collected, zombie)

    assert git(remote, "rev-parse", "main") == before
    assert git(remote, "for-each-ref", "refs/ralph/tasks/") == ""


def test_conflict_with_the_remote_is_reported_with_the_file_and_leaves_nothing_mid_merge(
    hosts: tuple[Path, Path], remote: Path
) -> None:
    a = RemoteWorktrees(hosts[0], "origin", ralph_dir=ensure_ralph_dir(hosts[0]))
    b = RemoteWorktrees(hosts[1], "origin", ralph_dir=ensure_ralph_dir(hosts[1]))
    a.start(["w"]), b.start(["w"])
    ws_a, ta = work(a, "w", "ta", {"shared.txt": "from A\n"})
    ws_b, tb = work(b, "w", "tb", {"shared.txt": "from B\n"})
    assert land(ws_a, "ta", ta).status == "landed"

    result = land(ws_b, "tb", tb)

    assert result.status == "conflict" and result.files == ["shared.txt"]
    assert result.note.startswith("Merge conflict landing on main: shared.txt.")
    assert "task ta" in result.note  # the remote's commit that changed those lines
    assert (ws_b.path / "shared.txt").read_text() == "from B\n"  # the worker keeps it as a patch
    for gitdir in (hosts[1] / ".git", *(hosts[1] / ".git" / "worktrees").iterdir()):
        assert not (gitdir / "rebase-merge").exists() and not (gitdir / "MERGE_HEAD").exists()
    assert git(remote, "show", "main:shared.txt") == "from A"
    assert b.landed("tb") is None


def test_dirty_main_checkout_is_left_alone_while_the_push_lands(
    hosts: tuple[Path, Path], remote: Path
) -> None:
    wt = RemoteWorktrees(hosts[0], "origin", ralph_dir=ensure_ralph_dir(hosts[0]))
    logged: list[str] = []
    wt.log = logged.append
    wt.start(["w"])
    (hosts[0] / "README.md").write_text("my own edit\n")
    before = git(hosts[0], "rev-parse", "main")
    ws, collected = work(wt, "w", "t1", {"work/t1.txt": "x\n", "README.md": "the task's\n"})

    result = land(ws, "t1", collected)

    assert result.status == "landed"
    assert any("not updated" in line and "README.md" in line for line in logged), logged
    assert git(remote, "rev-parse", "main") == result.commit
    assert git(hosts[0], "rev-parse", "main") == before
    assert (hosts[0] / "README.md").read_text() == "my own edit\n"


def test_push_branches_pushes_the_task_branch_as_one_commit_and_leaves_the_target(
    hosts: tuple[Path, Path], remote: Path
) -> None:
    wt = RemoteWorktrees(
        hosts[0], "origin", ralph_dir=ensure_ralph_dir(hosts[0]), push_branches=True
    )
    wt.start(["w"])
    ws = wt.workspace("w", wait=lambda seconds: False)
    base = ws.prepare("t1", 1, hosts[0] / ".ralph" / "runs" / "t1" / "1")
    (ws.path / "work").mkdir()
    (ws.path / "work" / "t1.txt").write_text("x\n")
    git(ws.path, "add", "-A")
    git(ws.path, "commit", "-q", "-m", "the agent's first commit")
    (ws.path / "work" / "t1.txt").write_text("x\ny\n")
    git(ws.path, "commit", "-q", "-am", "the agent's second commit")
    before = git(remote, "rev-parse", "main")

    result = land(ws, "t1", ws.collect("t1", 1, base))

    assert result.status == "landed"
    assert git(remote, "rev-parse", "main") == before
    assert git(hosts[0], "rev-parse", "main") == before
    assert git(remote, "rev-parse", "ralph/t1") == result.commit
    assert git(remote, "rev-parse", "refs/ralph/tasks/t1") == result.commit
    assert git(remote, "rev-list", "--count", "main..ralph/t1") == "1"
    assert git(remote, "log", "-1", "--format=%s", "ralph/t1") == "task t1"


def test_run_with_push_branches_pushes_each_task_branch_for_review_and_marks_it_done(
    hosts: tuple[Path, Path], remote: Path, tmp_path: Path
) -> None:
    db = str(tmp_path / "shared.db")
    with open_store(db) as store:
        store.add_many([{"id": "t1", "title": "one"}, {"id": "t2", "title": "two"}])
    before = git(remote, "rev-parse", "main")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "ralph", "run", "--remote", "origin", "--push-branches"),
            *("--worker", "hostA", "--agent-cmd", f"{sys.executable} {AGENT}"),
            *("--config", str(tmp_path / "ralph.toml")),
        ],
        cwd=hosts[0],
        env={**os.environ, "HOME": str(tmp_path / "home"), "RALPH_DB": db},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )

    assert proc.returncode == 0, proc.stderr
    assert git(remote, "rev-parse", "main") == before
    for task in ("t1", "t2"):
        assert git(remote, "rev-list", "--count", f"main..ralph/{task}") == "1"
        assert git(remote, "rev-parse", f"refs/ralph/tasks/{task}") == git(
            remote, "rev-parse", f"ralph/{task}"
        )
        shown = git(remote, "show", "--format=", "--name-only", f"ralph/{task}").split()
        assert [f for f in shown if f != "progress.md"] == [f"work/{task}.txt"]
    with open_store(db) as store:
        assert store.status_counts()["done"] == 2


def test_unknown_remote_is_one_line_usage_error_naming_the_known_remotes(
    hosts: tuple[Path, Path], tmp_path: Path
) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ralph",
            "run",
            "--remote",
            "upstream",
            "--agent-cmd",
            f"{sys.executable} {AGENT}",
        ],
        cwd=hosts[0],
        env={**os.environ, "HOME": str(tmp_path / "home"), "RALPH_DB": str(tmp_path / "x.db")},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == errors.UsageError.exit_code
    assert "no git remote named 'upstream'" in proc.stderr and "origin" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr
