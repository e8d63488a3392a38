"""Per-worker worktrees and the serialized landing of task commits, on real git repositories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from gitutil import git, init_repo

from ralph import errors
from ralph.store import ensure_ralph_dir
from ralph.workspace.base import Collected, Landing
from ralph.workspace.git import RefRaceError
from ralph.workspace.mergelock import MergeLock
from ralph.workspace.worktree import MAIN_SYNC, Worktrees, WorktreeWorkspace


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init_repo(
        tmp_path / "repo",
        {"shared.txt": "one\ntwo\nthree\n", "README.md": "demo\n"},
        message="initial",
    )
    return root


def no_fence() -> None:
    """The claim is still ours."""


def stop_waiting(seconds: float) -> bool:
    """The run is stopping: a landing that has to wait gives up."""
    return False


def workspace(wt: Worktrees, worker: str, **kw: Any) -> WorktreeWorkspace:
    kw.setdefault("wait", stop_waiting)
    return wt.workspace(worker, **kw)


def work(
    wt: Worktrees, worker: str, task: str, files: dict[str, str], attempt: int = 1, **kw: Any
) -> tuple[WorktreeWorkspace, Collected]:
    """What a worker does for a task: a clean start at the target's head, the agent's edits,
    then everything it left collected as one tree."""
    ws = workspace(wt, worker, **kw)
    base = ws.prepare(task, attempt, wt.ralph_dir / "runs" / task / str(attempt))
    for name, text in files.items():
        (ws.path / name).parent.mkdir(parents=True, exist_ok=True)
        (ws.path / name).write_text(text)
    return ws, ws.collect(task, attempt, base)


def message(task: str, subject: str = "") -> str:
    return f"{subject or f'task {task}'}\n\nTask: {task}\n"


def land(ws: WorktreeWorkspace, task: str, collected: Collected, subject: str = "") -> Landing:
    return ws.land(task, collected, message(task, subject), no_fence)


def history(root: Path, ref: str = "main") -> list[str]:
    return git(root, "log", "--format=%s", ref).splitlines()


def in_progress(gitdir: Path) -> list[str]:
    markers = ("rebase-merge", "rebase-apply", "MERGE_HEAD", "CHERRY_PICK_HEAD")
    return [m for m in markers if (gitdir / m).exists()]


def test_worker_worktree_lives_under_ralph_dir_is_detached_and_is_reused(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    paths = wt.start(["worker-1", "worker-2"])
    assert paths["worker-1"] == repo / ".ralph" / "worktrees" / "worker-1"
    assert (repo / ".ralph" / ".gitignore").read_text() == "*\n"
    (paths["worker-1"] / "cache.bin").write_text("kept")  # untracked, dropped between tasks
    ws, _ = work(wt, "worker-1", "t1", {"a.txt": "a\n"})
    assert ws.path == paths["worker-1"]
    assert not (ws.path / "cache.bin").exists()
    assert git(ws.path, "branch", "--show-current") == ""  # detached: no ralph/<task> branch
    assert git(repo, "branch", "--format=%(refname:short)") == "main"
    again = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo)).start(["worker-1"])["worker-1"]
    assert again == ws.path
    assert git(again, "rev-parse", "--git-common-dir").startswith(str(repo))
    assert git(repo, "status", "--porcelain") == ""  # .ralph/ stays out of the main checkout


def test_stale_worktrees_from_a_crashed_run_are_repaired_at_start(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    paths = wt.start(["mid-rebase", "dirty", "locked", "gone"])
    # mid-rebase: a conflicting rebase an agent left running when the worker was killed.
    p = paths["mid-rebase"]
    (p / "shared.txt").write_text("one\nTWO-a\nthree\n")
    git(p, "commit", "-q", "-am", "agent's commit")
    (repo / "shared.txt").write_text("one\nTWO-main\nthree\n")
    git(repo, "commit", "-q", "-am", "main edits line two")
    assert subprocess.run(["git", "rebase", "main"], cwd=p, capture_output=True).returncode != 0
    assert in_progress(Path(git(p, "rev-parse", "--absolute-git-dir")))
    # dirty: a killed attempt's half-written files and a stale index.lock
    d = workspace(wt, "dirty")
    d.prepare("t2", 1, tmp_run := repo.parent / "run-t2")
    (d.path / "README.md").write_text("half written")
    (d.path / "new.txt").write_text("untracked")
    Path(git(d.path, "rev-parse", "--absolute-git-dir"), "index.lock").write_text("")
    git(repo, "worktree", "lock", str(paths["locked"]))
    subprocess.run(["rm", "-rf", str(paths["gone"])], check=True)

    repaired = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo)).start(
        ["mid-rebase", "dirty", "locked", "gone"]
    )

    listed = git(repo, "worktree", "list", "--porcelain")
    for name, path in repaired.items():
        gitdir = Path(git(path, "rev-parse", "--absolute-git-dir"))
        assert in_progress(gitdir) == [], name
        assert git(path, "status", "--porcelain") == "", name
        assert f"worktree {path}" in listed
    assert "\nlocked" not in listed
    assert (repaired["gone"] / "README.md").read_text() == "demo\n"
    leftovers = (tmp_run / "leftovers.patch").read_text()  # beside that attempt's output
    assert "half written" in leftovers and "new.txt" in leftovers
    assert not (repo / ".ralph" / "worktrees" / "dirty.json").exists()
    assert subprocess.run(["git", "fsck", "--no-progress"], cwd=repo).returncode == 0


def test_tasks_editing_different_files_land_linearly_one_commit_each(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1", "w2", "w3"])
    made = [
        work(wt, w, f"t{n}", {f"f{n}.txt": f"{n}\n"}) for n, w in enumerate(["w1", "w2", "w3"], 1)
    ]
    results = [land(ws, f"t{n}", c) for n, (ws, c) in enumerate(made, 1)]  # all from one head

    assert [r.status for r in results] == ["landed"] * 3
    assert history(repo) == ["task t3", "task t2", "task t1", "initial"]
    assert git(repo, "rev-list", "--merges", "main") == ""
    for n, result in enumerate(results, 1):
        assert git(repo, "rev-parse", f"refs/ralph/tasks/t{n}") == result.commit
        assert git(repo, "show", "--format=", "--name-only", result.commit) == f"f{n}.txt"
        assert git(repo, "log", "-1", "--format=%(trailers:key=Task,valueonly)", result.commit) == (
            f"t{n}"
        )
    assert results[-1].commit == git(repo, "rev-parse", "main")
    assert git(repo, "branch", "--format=%(refname:short)") == "main"  # no task branches


def test_same_line_edits_second_reports_conflict_and_nothing_is_left_mid_merge(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1", "w2"])
    ws1, c1 = work(wt, "w1", "t1", {"shared.txt": "one\nTWO from t1\nthree\n"})
    ws2, c2 = work(wt, "w2", "t2", {"shared.txt": "one\nTWO from t2\nthree\n"})

    assert land(ws1, "t1", c1).status == "landed"
    head = git(repo, "rev-parse", "main")
    second = land(ws2, "t2", c2)

    assert second.status == "conflict"
    assert second.files == ["shared.txt"]
    assert second.note.startswith("Merge conflict landing on main: shared.txt.")
    assert "task t1" in second.note  # the commit that changed those lines meanwhile
    assert git(repo, "rev-parse", "main") == head
    assert wt.landed("t2") is None
    assert in_progress(Path(git(ws2.path, "rev-parse", "--absolute-git-dir"))) == []
    assert in_progress(repo / ".git") == []
    # The attempt's work is kept as a patch (the worker's discard), not as a branch.
    patch = repo.parent / "t2.patch"
    assert str(patch) in ws2.discard("t2", 1, patch)
    assert "TWO from t2" in patch.read_text()
    assert git(ws2.path, "status", "--porcelain") == ""

    # The retry starts from the new head and lands.
    ws2, c2 = work(wt, "w2", "t2", {"shared.txt": "one\nTWO from t1 and t2\nthree\n"}, attempt=2)
    assert c2.base == head
    assert land(ws2, "t2", c2, "task t2 retry").status == "landed"
    assert history(repo) == ["task t2 retry", "task t1", "initial"]


def test_a_lost_claim_leaves_target_checkout_and_task_ref_unmoved(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["zombie"])
    ws, collected = work(wt, "zombie", "t1", {"z.txt": "zombie\n"})
    head = git(repo, "rev-parse", "main")

    def lost() -> None:
        raise errors.LeaseLostError("cannot complete t1: fencing token 1 is stale")

    with pytest.raises(errors.LeaseLostError, match="stale"):
        ws.land("t1", collected, message("t1"), lost)
    assert git(repo, "rev-parse", "main") == head
    assert wt.landed("t1") is None
    assert not (repo / "z.txt").exists()


def test_a_task_lands_once_a_second_holder_finds_it_already_landed(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["old", "new"])
    old, stale = work(wt, "old", "t1", {"old.txt": "stale work\n"})
    new, fresh = work(wt, "new", "t1", {"new.txt": "fresh work\n"})  # took the task over

    landed = land(new, "t1", fresh)
    again = land(old, "t1", stale)

    assert landed.status == "landed"
    assert (again.status, again.commit) == ("already", landed.commit)
    assert not (repo / "old.txt").exists() and (repo / "new.txt").exists()
    assert history(repo) == ["task t1", "initial"]


def test_the_ref_transaction_refuses_a_second_commit_of_a_task(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1"])
    ws, collected = work(wt, "w1", "t1", {"a.txt": "a\n"})
    assert land(ws, "t1", collected).status == "landed"
    head = git(repo, "rev-parse", "main")
    other = git(repo, "commit-tree", git(repo, "rev-parse", "main^{tree}"), "-p", head, "-m", "x")
    with wt.lock("test"), pytest.raises(RefRaceError):
        wt.advance("t1", head, other)
    assert git(repo, "rev-parse", "main") == head


def test_clean_main_checkout_on_target_is_updated_with_the_landing(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1"])
    ws, collected = work(wt, "w1", "t1", {"feature.txt": "new\n", "README.md": "demo v2\n"})
    (repo / "scratch.txt").write_text("user's untracked notes")

    result = land(ws, "t1", collected)

    assert result.status == "landed"
    assert (repo / "feature.txt").read_text() == "new\n"
    assert (repo / "README.md").read_text() == "demo v2\n"
    assert git(repo, "status", "--porcelain") == "?? scratch.txt"
    assert git(repo, "reflog", "-1", "--format=%gs", "main") == "ralph"
    assert not (repo / ".ralph" / MAIN_SYNC).exists()


def test_a_deferred_checkout_move_is_finished_by_the_next_landing_before_it_checks(
    repo: Path,
) -> None:
    # A landing gives the merge lock back before the main checkout's files follow the target;
    # the next landing finishes that move first, so its own check sees ralph's files, not the
    # user's, and the user's edit elsewhere is never touched.
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1"])
    _, first = work(wt, "w1", "t1", {"feature.txt": "one\n", "README.md": "demo v2\n"})
    (repo / "shared.txt").write_text("the user's edit\n")
    old = git(repo, "rev-parse", "main")
    new = git(repo, "commit-tree", first.tree, "-p", old, "-m", "t1")
    with wt.lock("test"):
        assert wt.advance("t1", old, new, defer_sync=True) is None
    assert git(repo, "rev-parse", "main") == new
    assert not (repo / "feature.txt").exists()  # not yet: the marker says what is pending
    assert json.loads((repo / ".ralph" / MAIN_SYNC).read_text()) == {"old": old, "new": new}

    ws, second = work(wt, "w1", "t2", {"feature.txt": "two\n"})
    newer = git(repo, "commit-tree", second.tree, "-p", new, "-m", "t2")
    with wt.lock("test"):  # README.md and feature.txt are t1's now, not a user's change
        assert wt.advance("t2", new, newer, defer_sync=True) is None
        assert (repo / "README.md").read_text() == "demo v2\n"
    wt.sync_main()
    wt.sync_main()  # nothing left to do

    assert (repo / "feature.txt").read_text() == "two\n"
    assert (repo / "shared.txt").read_text() == "the user's edit\n"
    assert git(repo, "status", "--porcelain") == "M shared.txt"
    assert not (repo / ".ralph" / MAIN_SYNC).exists()


def test_a_user_edit_to_a_path_the_task_changes_is_untouched_and_the_landing_waits(
    repo: Path,
) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1"])
    logged: list[str] = []
    task_files = {"feature.txt": "new\n", "README.md": "demo v2\n"}
    ws, collected = work(wt, "w1", "t1", task_files, log=logged.append)
    (repo / "README.md").write_text("user is editing\n")
    head = git(repo, "rev-parse", "main")

    stopped = land(ws, "t1", collected)  # the run stops while it waits

    assert stopped.status == "interrupted" and "README.md" in stopped.note
    assert any("waiting to land" in line and "README.md" in line for line in logged)
    assert git(repo, "rev-parse", "main") == head and wt.landed("t1") is None
    assert (repo / "README.md").read_text() == "user is editing\n"
    assert not (repo / "feature.txt").exists()
    assert git(repo, "status", "--porcelain") == "M README.md"

    waits: list[float] = []

    def user_finishes(seconds: float) -> bool:  # once the user is done, the landing goes on
        waits.append(seconds)
        git(repo, "checkout", "--", "README.md")
        return True

    ws, collected = work(wt, "w1", "t1", task_files, attempt=2, wait=user_finishes)
    (repo / "README.md").write_text("user is editing again\n")
    assert land(ws, "t1", collected).status == "landed"
    assert len(waits) == 1 and (repo / "feature.txt").exists()
    assert (repo / "README.md").read_text() == "demo v2\n"


def test_a_user_edit_to_a_path_the_task_does_not_change_neither_blocks_nor_is_touched(
    repo: Path,
) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1"])
    ws, collected = work(wt, "w1", "t1", {"feature.txt": "new\n"})
    (repo / "README.md").write_bytes(b"user is editing\r\nno newline")
    (repo / "shared.txt").write_text("staged by the user\n")
    git(repo, "add", "shared.txt")

    assert land(ws, "t1", collected).status == "landed"

    assert (repo / "feature.txt").read_text() == "new\n"
    assert (repo / "README.md").read_bytes() == b"user is editing\r\nno newline"
    assert git(repo, "status", "--porcelain") == "M README.md\nM  shared.txt"  # " M", "M "
    assert git(repo, "show", ":shared.txt") == "staged by the user"


def test_target_not_checked_out_in_main_repo_moves_only_the_ref(repo: Path) -> None:
    git(repo, "branch", "work")
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo), target="work")
    wt.start(["w1"])
    ws, collected = work(wt, "w1", "t1", {"feature.txt": "new\n"})
    (repo / "README.md").write_text("dirty on main, which is not the target\n")

    result = land(ws, "t1", collected)

    assert result.status == "landed"
    assert history(repo, "work") == ["task t1", "initial"]
    assert history(repo, "main") == ["initial"]
    assert not (repo / "feature.txt").exists()


def test_a_landing_killed_between_checkout_files_and_ref_is_put_right_at_start(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1"])
    ws, collected = work(wt, "w1", "t1", {"feature.txt": "new\n"})
    old = git(repo, "rev-parse", "main")
    new = git(repo, "commit-tree", collected.tree, "-p", old, "-m", "t1")
    # what advance() does before the ref moves: the marker, then the main checkout's files
    (repo / ".ralph" / MAIN_SYNC).write_text(json.dumps({"old": old, "new": new}))
    git(repo, "read-tree", "-m", "-u", old, new)
    assert (repo / "feature.txt").exists()

    Worktrees(repo, ralph_dir=ensure_ralph_dir(repo)).start(["w1"])

    assert not (repo / "feature.txt").exists()
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / ".ralph" / MAIN_SYNC).exists()


def test_several_commits_of_one_task_land_as_one_commit_with_the_workers_message(
    repo: Path,
) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1"])
    ws = workspace(wt, "w1")
    base = ws.prepare("t1", 1, repo.parent / "run")
    (ws.path / "a.txt").write_text("a\n")
    git(ws.path, "add", "-A")
    git(ws.path, "commit", "-q", "-m", "agent's own commit")
    (ws.path / "b.txt").write_text("b\n")
    git(ws.path, "add", "-A")
    git(ws.path, "commit", "-q", "-m", "Add a and b")

    collected = ws.collect("t1", 1, base)

    assert collected.subjects == ["agent's own commit", "Add a and b"]
    assert collected.kept == "refs/ralph/attempts/t1/1"
    assert git(ws.path, "rev-parse", "HEAD") == base  # HEAD put back, files kept
    assert land(ws, "t1", collected).status == "landed"
    assert history(repo) == ["task t1", "initial"]
    assert git(repo, "show", "--format=", "--name-only", "main").split() == ["a.txt", "b.txt"]


def test_nothing_changed_collects_no_changes_and_a_change_the_target_has_lands_as_empty(
    repo: Path,
) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1", "w2"])
    ws = workspace(wt, "w1")
    base = ws.prepare("t0", 1, repo.parent / "run")
    assert ws.collect("t0", 1, base).changes == []

    ws1, c1 = work(wt, "w1", "t1", {"same.txt": "same\n"})
    ws2, c2 = work(wt, "w2", "t2", {"same.txt": "same\n"})
    assert land(ws1, "t1", c1).status == "landed"
    empty = land(ws2, "t2", c2)
    assert empty.status == "empty" and wt.landed("t2") is None
    assert history(repo) == ["task t1", "initial"]


def test_a_rebased_result_that_fails_verify_does_not_land(repo: Path) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start(["w1", "w2"])
    ws1, c1 = work(wt, "w1", "t1", {"a.txt": "a\n"})
    ws2, c2 = work(wt, "w2", "t2", {"b.txt": "b\n"})
    assert land(ws1, "t1", c1).status == "landed"
    head = git(repo, "rev-parse", "main")
    seen: list[list[str]] = []

    def reverify(path: Path) -> str | None:
        seen.append(sorted(p.name for p in path.glob("*.txt")))
        return "tests fail with t1's change"

    result = ws2.land("t2", c2, message("t2"), no_fence, reverify)

    assert (result.status, result.note) == ("verify_failed", "tests fail with t1's change")
    assert seen == [["a.txt", "b.txt", "shared.txt"]]  # verified on the merged tree
    assert git(repo, "rev-parse", "main") == head and wt.landed("t2") is None
    # what the worker keeps of the failed attempt is its own work, not t1's change with it
    patch = repo.parent / "t2.patch"
    kept = ws2.discard("t2", 1, patch)
    assert kept == [str(patch)]
    assert "b.txt" in patch.read_text() and "a.txt" not in patch.read_text()
    assert git(ws2.path, "rev-parse", "HEAD") == c2.base
    assert git(ws2.path, "status", "--porcelain") == ""


def test_outside_a_repository_or_detached_head_is_a_usage_error(tmp_path: Path, repo: Path) -> None:
    with pytest.raises(errors.UsageError, match="not inside a git repository"):
        Worktrees(tmp_path / "nowhere", ralph_dir=tmp_path / "unused")
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(errors.UsageError, match="detached"):
        Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    with pytest.raises(errors.UsageError, match="no branch named 'nope'"):
        Worktrees(repo, ralph_dir=ensure_ralph_dir(repo), target="nope")


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ralph.workspace.mergelock import MergeLock
    with MergeLock(Path(sys.argv[1]), holder="other-process"):
        Path(sys.argv[2]).write_text("held")
        while not Path(sys.argv[3]).exists():
            time.sleep(0.02)
""")


def test_merge_lock_excludes_other_processes_until_released(tmp_path: Path) -> None:
    lock, held, done = tmp_path / "merge.lock", tmp_path / "held", tmp_path / "done"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock), str(held), str(done)])
    try:
        while not held.exists():
            assert proc.poll() is None
        with pytest.raises(errors.RalphError, match="other-process"), MergeLock(lock, timeout=0.3):
            pass
        done.write_text("")
        assert proc.wait(timeout=30) == 0
        with MergeLock(lock, timeout=30):
            pass
    finally:
        proc.kill()


LAND_MANY = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ralph.workspace.worktree import Worktrees
    from ralph.store import ensure_ralph_dir
    repo, worker, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    wt.start([worker])
    ws = wt.workspace(worker, wait=lambda s: False)
    while not go.exists():
        time.sleep(0.005)
    for n in range(4):
        task = f"{worker}-{n}"
        base = ws.prepare(task, 1, repo.parent / "runs" / task)
        (ws.path / f"{task}.txt").write_text(task)
        collected = ws.collect(task, 1, base)
        print(ws.land(task, collected, f"{task}\\n\\nTask: {task}\\n", lambda: None).status,
              flush=True)
""")


def test_two_processes_landing_at_once_take_turns_under_the_merge_lock(
    repo: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LAND_MANY, str(repo), name, str(go)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("p1", "p2")
    ]
    go.write_text("")
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]

    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [["landed"] * 4] * 2
    subjects = history(repo)
    assert len(subjects) == 9 and sorted(subjects[:-1]) == sorted(
        f"{w}-{n}" for w in ("p1", "p2") for n in range(4)
    )
    tasks = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/ralph/tasks/").split()
    assert len(tasks) == 8
    assert git(repo, "rev-list", "--merges", "main") == ""
    assert git(repo, "status", "--porcelain") == ""


BUSY_INDEX_GIT = """#!/bin/sh
# The first `git add -A` in the worker's worktree finds its index lock taken, as when another
# git (an editor's `git status`) holds it for a moment; everything else is the real git.
if [ "$1" = add ] && [ "$2" = -A ] && [ ! -e "$BUSY_ONCE" ]; then
    case "$(pwd -P)" in */worktrees/dirty*)
        : > "$BUSY_ONCE"
        echo "fatal: Unable to create '$(pwd -P)/.git/index.lock': File exists." >&2
        exit 128 ;;
    esac
fi
exec "$REAL_GIT" "$@"
"""


def test_a_repair_that_meets_a_busy_index_lock_keeps_the_leftovers_and_the_worktree(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wt = Worktrees(repo, ralph_dir=ensure_ralph_dir(repo))
    d = workspace(wt, "dirty")
    d.prepare("t2", 1, tmp_run := tmp_path / "run-t2")
    (d.path / "README.md").write_text("half written")
    gitdir = git(d.path, "rev-parse", "--absolute-git-dir")
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(BUSY_INDEX_GIT)
    wrapper.chmod(0o755)
    monkeypatch.setenv("REAL_GIT", shutil.which("git") or "git")
    monkeypatch.setenv("BUSY_ONCE", str(tmp_path / "busy-once"))
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")

    Worktrees(repo, ralph_dir=ensure_ralph_dir(repo)).start(["dirty"])

    assert (tmp_path / "busy-once").exists()  # the busy lock was met
    assert "half written" in (tmp_run / "leftovers.patch").read_text()
    assert git(d.path, "rev-parse", "--absolute-git-dir") == gitdir  # repaired in place
    assert git(d.path, "status", "--porcelain") == ""
