"""Every loop is bounded: a task id git refuses, a git that refuses a ref move, a stuck merge
lock, a remote that does not answer, a closed stdout, a worker restarted under its old name and
a title written to look like trailers each end in a bounded number of launches (or none), never
in a spinning, hanging or crashed run. Real `ralph` processes, real git, faults made by a `git`
wrapper first on PATH or by signals, at deterministic points.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaos import RALPH, agent_cmd, chaos_env, check_history, git, make_repo

from ralph.store import ensure_ralph_dir, open_store
from tests.support.cli import ralph as run_ralph

FAST_RETRIES = 'max_attempts = 3\nbackoff = "50ms"\nbackoff_max = "100ms"\n'
REAL_GIT = shutil.which("git") or "git"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo")
    (root / "ralph.toml").write_text(FAST_RETRIES)
    git(root, "add", "ralph.toml")
    git(root, "commit", "-q", "-m", "config")
    return root


def ralph(
    cwd: Path, env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess:
    return run_ralph(*args, cwd=cwd, env=env, timeout=timeout)


def launches(tmp_path: Path) -> list[str]:
    path = tmp_path / "launches.txt"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def wrapper_on_path(tmp_path: Path, env: dict[str, str], script: str) -> None:
    """A `git` first on PATH that runs `script` (a sh case over "$*") before the real git."""
    folder = tmp_path / "wrapper"
    folder.mkdir(exist_ok=True)
    wrapper = folder / "git"
    wrapper.write_text(f'#!/bin/sh\n{script}\nexec {REAL_GIT} "$@"\n')
    wrapper.chmod(0o755)
    env["PATH"] = f"{folder}:{env['PATH']}"


def run_args(kind: str) -> list[str]:
    return ["run", "--agent-cmd", agent_cmd()] + (
        ["--workers", "2", "--no-live"] if kind == "worktree" else []
    )


# -- 1. task ids git refuses in a ref name are refused at the door -----------------------------

BAD_IDS = ["US:1", "x.lock", "a..b", "ends.", "with space", "-dash", ".dot", "a~1", "a^b", "a@{1}"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_add_refuses_an_id_git_cannot_name_a_ref_and_changes_nothing(
    tmp_path: Path, repo: Path, bad: str
) -> None:
    db = str(tmp_path / "ralph.db")
    env = chaos_env(tmp_path, db)
    assert ralph(repo, env, "add", "a good one", "--id", "good-1").returncode == 0
    refused = ralph(repo, env, "add", "a bad one", "--id", bad)
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "Traceback" not in refused.stderr
    assert "invalid task id" in refused.stderr
    with open_store(db) as store:
        assert [t.id for t in store.list(limit=None)] == ["good-1"]


def test_every_id_add_accepts_is_a_valid_git_ref_name(tmp_path: Path, repo: Path) -> None:
    from ralph.models import ID_PATTERN

    candidates = BAD_IDS + ["US-001", "a.b", "rl-abc12345", "x.lock.y", "A_b-9", "a" * 64]
    for task_id in candidates:
        ok = subprocess.run(
            [REAL_GIT, "check-ref-format", f"refs/ralph/tasks/{task_id}"], capture_output=True
        )
        if ID_PATTERN.match(task_id):
            assert ok.returncode == 0, task_id


def test_jsonl_import_with_an_id_git_refuses_names_the_line_and_writes_nothing(
    tmp_path: Path, repo: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    env = chaos_env(tmp_path, db)
    source = tmp_path / "tasks.jsonl"
    source.write_text(
        json.dumps({"id": "ok-1", "title": "fine"})
        + "\n"
        + json.dumps({"id": "US:1", "title": "x"})
    )
    refused = ralph(repo, env, "add", "--from", str(source))
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    with open_store(db) as store:
        assert store.list(limit=None) == []


def test_prd_story_ids_git_refuses_become_valid_task_ids_that_land(
    tmp_path: Path, repo: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    env = chaos_env(tmp_path, db, CHAOS_MIN="0", CHAOS_MAX="0")
    prd = {"userStories": [{"id": "US:1", "title": "colon story", "passes": False}]}
    (repo / "prd.json").write_text(json.dumps(prd, indent=2) + "\n")
    git(repo, "add", "prd.json")
    git(repo, "commit", "-q", "-m", "prd")
    imported = ralph(repo, env, "import", "prd.json", "--apply")
    assert imported.returncode == 0, imported.stderr
    git(repo, "commit", "-q", "-am", "ralph.toml names the prd")
    with open_store(db) as store:
        (task,) = store.list(limit=None)
    assert task.metadata["story_id"] == "US:1"
    git(repo, "check-ref-format", f"refs/ralph/tasks/{task.id}")
    done = ralph(repo, env, *run_args("checkout"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert launches(tmp_path) == [task.id]
    assert git(repo, "rev-parse", f"refs/ralph/tasks/{task.id}") == git(repo, "rev-parse", "main")
    assert json.loads((repo / "prd.json").read_text())["userStories"][0]["passes"] is True


# -- 2. a git refusal that is not a race counts as an attempt -----------------------------------

REFUSE_UPDATE_REF = """case " $* " in
*" update-ref --stdin "*) echo "fatal: update_ref failed: Input/output error" >&2; exit 128;;
esac"""


@pytest.mark.parametrize("kind", ["checkout", "worktree"])
def test_a_git_that_refuses_the_ref_move_ends_the_task_failed_after_max_attempts(
    tmp_path: Path, repo: Path, kind: str
) -> None:
    db = str(tmp_path / "ralph.db")
    with open_store(db) as store:
        store.add("refused", id="t1")
    env = chaos_env(tmp_path, db, CHAOS_MIN="0", CHAOS_MAX="0")
    wrapper_on_path(tmp_path, env, REFUSE_UPDATE_REF)
    start = git(repo, "rev-parse", "main")
    result = ralph(repo, env, *run_args(kind))
    assert result.returncode == 13, result.stderr[-3000:]  # tasks failed, no crash
    assert "Traceback" not in result.stderr
    assert launches(tmp_path) == ["t1"] * 3  # max_attempts launches, not one more
    with open_store(db) as store:
        task = store.get("t1")
        outcomes = [a.outcome for a in store.attempts("t1")]
    assert task.status == "failed" and task.attempts == 3
    assert outcomes == ["git_failed"] * 3
    assert git(repo, "rev-parse", "main") == start
    assert git(repo, "status", "--porcelain") == ""
    git(repo, "fsck", "--no-progress", "--strict")


@pytest.mark.parametrize("kind", ["checkout", "worktree"])
def test_a_stored_id_git_refuses_ends_failed_after_max_attempts_instead_of_spinning(
    tmp_path: Path, repo: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ralph.store import core

    db = str(tmp_path / "ralph.db")
    monkeypatch.setattr(core, "ID_PATTERN", re.compile(r".+"))  # a store from before the check
    with open_store(db) as store:
        store.add("colon", id="US:1")
        store.add("fine", id="ok-1")
    env = chaos_env(tmp_path, db, CHAOS_MIN="0", CHAOS_MAX="0")
    result = ralph(repo, env, *run_args(kind))
    assert result.returncode == 13, result.stderr[-3000:]
    assert sorted(launches(tmp_path)) == ["US:1"] * 3 + ["ok-1"]
    with open_store(db) as store:
        assert store.get("US:1").status == "failed"
        assert store.get("ok-1").status == "done"
    check_history(repo, ["ok-1"], Path(db), since=git(repo, "rev-parse", "main~1"))


# -- 6. a task's text cannot inject trailers into its commit ------------------------------------

INJECTING = [
    "fix\n\nTask: other\nRalph-Token: 1",
    "fix\r\n---\r\nTask: other",
    "--- fix\nRalph-Token: 99",
]


def trailers(repo: Path, sha: str) -> list[str]:
    body = git(repo, "log", "-1", "--format=%B", sha)
    parsed = subprocess.run(
        [REAL_GIT, "interpret-trailers", "--parse"], input=body, capture_output=True, text=True
    )
    return parsed.stdout.splitlines()


@pytest.mark.parametrize("kind", ["checkout", "worktree"])
def test_a_title_with_newlines_cannot_inject_trailers_into_the_landed_commit(
    tmp_path: Path, repo: Path, kind: str
) -> None:
    db = str(tmp_path / "ralph.db")
    ids = [f"t{n}" for n in range(len(INJECTING))]
    with open_store(db) as store:
        for task_id, title in zip(ids, INJECTING, strict=True):
            store.add(title, id=task_id, description="body\n\nTask: evil\nRalph-Token: 7")
    env = chaos_env(tmp_path, db, CHAOS_MIN="0", CHAOS_MAX="0")
    result = ralph(repo, env, *run_args(kind))
    assert result.returncode == 0, result.stderr[-3000:]
    with open_store(db) as store:
        tasks = {t.id: t for t in store.list(limit=None)}
        tokens = {c["task"]: c["token"] for c in _claims(store)}
    for task_id in ids:
        sha = tasks[task_id].commit_sha
        assert sha
        found = trailers(repo, sha)
        assert [line.split(":", 1)[0] for line in found] == [
            "Task",
            "Agent",
            "Worker",
            "Cost",
            "Ralph-Token",
        ], found
        assert found[0] == f"Task: {task_id}"
        assert found[-1] == f"Ralph-Token: {tokens[task_id]}"
    check_history(repo, ids, Path(db), since=git(repo, "rev-parse", f"main~{len(ids)}"))


def test_a_template_ending_in_the_description_cannot_inject_trailers(
    tmp_path: Path, repo: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    (repo / "ralph.toml").write_text(
        FAST_RETRIES + 'commit_message = "{{ task.title }}\\n\\n{{ task.description }}\\n"\n'
    )
    git(repo, "commit", "-q", "-am", "template")
    with open_store(db) as store:
        store.add("fix it", id="t1", description="Why:\n\nTask: other\nRalph-Token: 1\n---\nx")
    env = chaos_env(tmp_path, db, CHAOS_MIN="0", CHAOS_MAX="0")
    result = ralph(repo, env, *run_args("checkout"))
    assert result.returncode == 0, result.stderr[-3000:]
    found = trailers(repo, "main")
    assert [line.split(":", 1)[0] for line in found] == ["Task", "Ralph-Token"], found
    assert found[0] == "Task: t1"


def _claims(store) -> list[dict]:  # noqa: ANN001
    return [{"task": e.task_id, "token": e.token} for e in store.events() if e.kind == "claimed"]


# -- 5. a worker restarted under its name takes back its dead claim at once ---------------------


def wait_for_line(path: Path, proc: subprocess.Popen) -> None:
    """Until `path` has a line (the agent's launch); fails if the run ended first."""
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["checkout", "worktree"])
def test_a_restart_under_the_same_name_expires_the_dead_holders_claim_at_once(
    tmp_path: Path, repo: Path, kind: str
) -> None:
    db = str(tmp_path / "ralph.db")
    with open_store(db) as store:
        store.add("survives a kill", id="t1")
    args = [*run_args(kind), "--lease", "2h"]
    if kind == "checkout":
        args += ["--worker", "w1"]
    env = chaos_env(tmp_path, db, CHAOS_MIN="3600", CHAOS_MAX="3600")
    first = subprocess.Popen(
        [*RALPH, *args], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    wait_for_line(tmp_path / "launches.txt", first)
    first.kill()
    first.communicate()
    with open_store(db) as store:
        (claim,) = store.claims()
        assert claim.state == "live"  # the dead run's claim, 2 h of lease left
    second = ralph(repo, {**env, "CHAOS_MIN": "0", "CHAOS_MAX": "0"}, *args)
    assert second.returncode == 0, second.stderr[-3000:]
    with open_store(db) as store:
        expired = store.events(task_id="t1", kind="expired")
        task = store.get("t1")
    assert [(e.token, e.data.get("reason")) for e in expired] == [(claim.token, "holder_dead")]
    assert task.status == "done"
    assert len(launches(tmp_path)) == 2
    check_history(repo, ["t1"], Path(db), since=git(repo, "rev-parse", "main~1"))


# -- 4. a closed stdout never hangs or crashes a run --------------------------------------------

GATED = Path(__file__).parent / "agents" / "gated.py"


def start_piped(tmp_path: Path, repo: Path, db: str, *extra: str) -> subprocess.Popen:
    """`ralph run -w 2 2>&1 | head -1`: the first line is read, then the reader goes away."""
    env = chaos_env(
        tmp_path,
        db,
        GATE=str(tmp_path / "gate"),
        GATED_LAUNCHES=str(tmp_path / "launches.txt"),
        GATED_DONE=str(tmp_path / "agents-done"),
    )
    proc = subprocess.Popen(
        [*RALPH, "run", "--workers", "2", "--no-live", "--agent-cmd",
         f"{sys.executable} {GATED}", *extra],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline()  # what `head -1` prints
    proc.stdout.close()  # and then it exits
    return proc


def test_a_run_whose_reader_went_away_finishes_every_task(tmp_path: Path, repo: Path) -> None:
    db = str(tmp_path / "ralph.db")
    ids = ["t1", "t2", "t3"]
    with open_store(db) as store:
        for task_id in ids:
            store.add(f"task {task_id}", id=task_id)
    proc = start_piped(tmp_path, repo, db)
    (tmp_path / "gate").write_text("")
    assert proc.wait(timeout=180) == 0
    with open_store(db) as store:
        assert {t.id: t.status for t in store.list(limit=None)} == dict.fromkeys(ids, "done")
        assert store.claims() == [] or all(c.state != "live" for c in store.claims())
    assert sorted(launches(tmp_path)) == ids
    check_history(repo, ids, Path(db), since=git(repo, "rev-parse", f"main~{len(ids)}"))


def test_sigterm_stops_a_run_whose_reader_went_away_while_a_landing_waits(
    tmp_path: Path, repo: Path
) -> None:
    db = str(tmp_path / "ralph.db")
    with open_store(db) as store:
        store.add("waits to land", id="t1")
    readme = repo / "out" / "t1.txt"  # the user's own file where the task writes
    readme.parent.mkdir()
    readme.write_text("the user's own edit\n")  # the landing waits for the path to be clean
    proc = start_piped(tmp_path, repo, db)
    (tmp_path / "gate").write_text("")
    while not (tmp_path / "agents-done" / "t1").exists():  # the agent finished: landing next
        assert proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 12  # interrupted while an agent's work was in hand
    assert readme.read_text() == "the user's own edit\n"
    with open_store(db) as store:
        assert store.get("t1").status == "open"
        assert all(c.state != "live" for c in store.claims())
    assert git(repo, "rev-list", "--count", "main") == "2"  # nothing landed


# -- 3. merge-lock waits, re-verify and remote hiccups: retries of one task ---------------------

VERIFY_WAITS = Path(__file__).parent / "agents" / "verify_waits.py"


def gated_env(tmp_path: Path, db: str, **extra: str) -> dict[str, str]:
    return chaos_env(tmp_path, db, GATED_LAUNCHES=str(tmp_path / "launches.txt"), **extra)


def test_the_re_verify_runs_outside_the_merge_lock_and_a_newer_head_is_verified_again(
    tmp_path: Path, repo: Path
) -> None:
    # t2 lands after t1, so its result is verified again on t1's head. While that re-verify
    # runs, t3 (started after t1 landed) must be able to land: under the lock it could not, and
    # the re-verify waits for t3. Then t2 is merged onto t3's head and verified a third time.
    (repo / "ralph.toml").write_text(
        FAST_RETRIES + 'merge_lock_timeout = "20s"\ntask_timeout = "90s"\n'
    )
    git(repo, "commit", "-q", "-am", "config")
    db = str(tmp_path / "ralph.db")
    with open_store(db) as store:
        for n, prio in ((1, 3), (2, 2), (3, 1)):
            store.add(f"task {n}", id=f"t{n}", priority=prio)
    started = tmp_path / "reverify-started"
    refs = repo / ".git" / "refs" / "ralph" / "tasks"
    env = gated_env(
        tmp_path, db,
        GATE_t2=str(refs / "t1"), GATE_t3=str(started),
        VERIFY_COUNTS=str(tmp_path / "verify-counts"), VERIFY_BLOCK_TASK="t2",
        VERIFY_STARTED=str(started), VERIFY_UNTIL=str(refs / "t3"),
    )  # fmt: skip
    result = ralph(
        repo, env, "run", "--workers", "2", "--no-live", "--agent-cmd",
        f"{sys.executable} {GATED}", "--verify", f"{sys.executable} {VERIFY_WAITS}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open_store(db) as store:
        assert {t.id: t.status for t in store.list(limit=None)} == dict.fromkeys(
            ["t1", "t2", "t3"], "done"
        )
        assert [a.outcome for a in store.attempts("t2")] == ["success"]
    assert (tmp_path / "verify-counts" / "t2").read_text() == "xxx"  # first, on t1, on t3
    order = git(repo, "log", "--reverse", "--format=%(trailers:key=Task,valueonly)", "-3", "main")
    assert order.split() == ["t1", "t3", "t2"]
    check_history(repo, ["t1", "t2", "t3"], Path(db), since=git(repo, "rev-parse", "main~3"))


@pytest.mark.parametrize("kind", ["checkout", "worktree"])
def test_a_merge_lock_held_past_its_timeout_fails_one_task_after_max_attempts_not_the_run(
    tmp_path: Path, repo: Path, kind: str
) -> None:
    import fcntl

    (repo / "ralph.toml").write_text(FAST_RETRIES + 'merge_lock_timeout = "1s"\n')
    git(repo, "commit", "-q", "-am", "config")
    db = str(tmp_path / "ralph.db")
    with open_store(db) as store:
        store.add("never lands", id="t1")
    env = gated_env(tmp_path, db, GATE=str(tmp_path / "gate"))
    args = [*RALPH, "run", "--agent-cmd", f"{sys.executable} {GATED}"]
    if kind == "worktree":
        args += ["--workers", "2", "--no-live"]
    proc = subprocess.Popen(args, cwd=repo, env=env, stderr=subprocess.PIPE, text=True)
    wait_for_line(tmp_path / "launches.txt", proc)  # the run has started: now a stopped
    lock = os.open(repo / ".ralph" / "merge.lock", os.O_RDWR | os.O_CREAT)  # holder keeps it
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        (tmp_path / "gate").write_text("")
        _, err = proc.communicate(timeout=180)
    finally:
        os.close(lock)
    assert proc.returncode == 13, err[-3000:]  # the task failed; nothing crashed
    assert "Traceback" not in err
    assert launches(tmp_path) == ["t1"] * 3
    with open_store(db) as store:
        assert [a.outcome for a in store.attempts("t1")] == ["lock_timeout"] * 3
        assert store.get("t1").status == "failed"
    assert git(repo, "rev-list", "--count", "main") == "3"  # start, config, config: no landing
    assert git(repo, "status", "--porcelain") == ""


FAIL_TWO_LS_REMOTES = """case " $* " in
*" ls-remote "*)
    if mkdir "$FAILS/0" 2>/dev/null || mkdir "$FAILS/1" 2>/dev/null; then
        echo "fatal: unable to access 'origin': Could not resolve host" >&2
        exit 128
    fi;;
esac"""


def test_a_remote_that_does_not_answer_ls_remote_delays_one_task_and_kills_no_agent(
    tmp_path: Path, repo: Path
) -> None:
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "fetch", "-q", "origin")
    db = str(tmp_path / "ralph.db")
    ids = ["t1", "t2", "t3"]
    with open_store(db) as store:
        for task_id in ids:
            store.add(f"task {task_id}", id=task_id)
    fails = tmp_path / "fails"
    fails.mkdir()
    env = gated_env(tmp_path, db, FAILS=str(fails))
    wrapper_on_path(tmp_path, env, FAIL_TWO_LS_REMOTES)
    result = ralph(
        repo, env, "run", "--workers", "2", "--no-live", "--remote", "origin",
        "--agent-cmd", f"{sys.executable} {GATED}",
    )  # fmt: skip
    assert len(list(fails.iterdir())) == 2  # both refusals happened
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    with open_store(db) as store:
        assert {t.id: t.status for t in store.list(limit=None)} == dict.fromkeys(ids, "done")
        notes = [e.data.get("note") or "" for e in store.events(kind="released")]
        relaunched = [a.task_id for a in store.attempts() if a.outcome == "git_failed"]
    assert sum("cannot ask origin" in note for note in notes) == 2
    # Before a launch: no agent ran; inside a landing: a counted attempt, its agent run again.
    # Either way no other worker's agent was stopped.
    assert sorted(launches(tmp_path)) == sorted(ids + relaunched)
    assert "stopping" not in result.stderr
    git(repo, "fetch", "-q", "origin")
    check_history(repo, ids, Path(db), since=git(repo, "rev-parse", "main~3"))


def test_registering_over_a_dead_holder_expires_its_claims_in_one_step(store) -> None:  # noqa: ANN001
    """The store half of the restart, on both backends: only a row still naming the pid the
    caller found dead (on that host) has its claims expired; a live or foreign one keeps them."""
    for task_id in ("a", "b", "c"):
        store.add(f"task {task_id}", id=task_id)
    store.register_worker("w1", pid=111, host="here")
    store.register_worker("w2", pid=222, host="there")
    held = store.claim("a", "w1"), store.claim("b", "w1"), store.claim("c", "w2")
    store.register_worker("w1", pid=333, host="here", dead_pid=999)  # not the pid in the row
    store.register_worker("w2", pid=444, host="here", dead_pid=222)  # another host's worker
    assert {c.task_id for c in store.claims() if c.state == "live"} == {"a", "b", "c"}
    store.register_worker("w1", pid=555, host="here", dead_pid=333)
    live = {c.task_id for c in store.claims() if c.state == "live"}
    assert live == {"c"}
    expired = store.events(kind="expired")
    assert sorted((e.task_id, e.token, e.data["reason"]) for e in expired) == [
        ("a", held[0].token, "holder_dead"),
        ("b", held[1].token, "holder_dead"),
    ]
    assert {t.id for t in store.ready()} == {"a", "b"}


def test_a_refused_ref_move_is_told_apart_from_a_race(tmp_path: Path) -> None:
    from ralph.workspace.git import Git, RefRaceError, RefRefusedError, git_env

    root = make_repo(tmp_path / "repo")
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    head = git(root, "rev-parse", "main")
    other = git(root, "commit-tree", "-p", head, "-m", "other", f"{head}^{{tree}}")
    scratch = tmp_path / "scratch"
    with pytest.raises(RefRaceError) as race:  # the target is not where the landing saw it
        g.update_refs([f"update refs/heads/main {other} {other}"], scratch)
    assert not isinstance(race.value, RefRefusedError)
    g.update_refs([f"create refs/ralph/tasks/t1 {head}"], scratch)
    with pytest.raises(RefRaceError) as again:  # the task's ref exists: landed elsewhere
        g.update_refs([f"create refs/ralph/tasks/t1 {other}"], scratch)
    assert not isinstance(again.value, RefRefusedError)
    with pytest.raises(RefRefusedError):  # no race can explain this one
        g.update_refs([f"create refs/ralph/tasks/US:1 {head}"], scratch)
    assert git(root, "rev-parse", "main") == head
