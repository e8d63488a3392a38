"""Per-worker worktrees and the serialized merge of task branches, on real git repositories."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from gitutil import git, init_repo

from ralph import errors
from ralph.worktrees import MergeLock, Worktrees


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init_repo(
        tmp_path / "repo",
        {"shared.txt": "one\ntwo\nthree\n", "README.md": "demo\n"},
        message="initial",
    )
    return root


def work(wt: Worktrees, worker: str, task: str, files: dict[str, str], message: str = "") -> Path:
    """What a worker does for a task: fresh branch, edit files, commit."""
    path = wt.prepare(worker, task)
    for name, text in files.items():
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message or f"task {task}")
    return path


def history(root: Path, ref: str = "main") -> list[str]:
    return git(root, "log", "--format=%s", ref).splitlines()


def in_progress(gitdir: Path) -> list[str]:
    markers = ("rebase-merge", "rebase-apply", "MERGE_HEAD", "CHERRY_PICK_HEAD")
    return [m for m in markers if (gitdir / m).exists()]


def test_worker_worktree_lives_under_ralph_dir_and_is_reused(repo: Path) -> None:
    wt = Worktrees(repo)
    paths = wt.start(["worker-1", "worker-2"])
    assert paths["worker-1"] == repo / ".ralph" / "worktrees" / "worker-1"
    assert (repo / ".ralph" / ".gitignore").read_text() == "*\n"
    (paths["worker-1"] / "cache.bin").write_text("kept")  # untracked, dropped between tasks
    first = work(wt, "worker-1", "t1", {"a.txt": "a\n"})
    assert first == paths["worker-1"]
    assert git(first, "branch", "--show-current") == "ralph/t1"
    again = Worktrees(repo).start(["worker-1"])["worker-1"]
    assert again == first
    assert git(again, "rev-parse", "--git-common-dir").startswith(str(repo))
    assert git(repo, "status", "--porcelain") == ""  # .ralph/ stays out of the main checkout


def test_stale_worktrees_from_a_crashed_run_are_repaired_at_start(repo: Path) -> None:
    wt = Worktrees(repo)
    paths = wt.start(["mid-rebase", "dirty", "locked", "gone"])
    # mid-rebase: a conflicting rebase left running, as a SIGKILL during integrate would.
    p = work(wt, "mid-rebase", "t1", {"shared.txt": "one\nTWO-a\nthree\n"})
    git(repo, "commit", "-q", "-am", "x", "--allow-empty")
    (repo / "shared.txt").write_text("one\nTWO-main\nthree\n")
    git(repo, "commit", "-q", "-am", "main edits line two")
    assert subprocess.run(["git", "rebase", "main"], cwd=p, capture_output=True).returncode != 0
    assert in_progress(Path(git(p, "rev-parse", "--absolute-git-dir")))
    # dirty: half-written files and a stale index.lock
    d = wt.prepare("dirty", "t2")
    (d / "README.md").write_text("half written")
    (d / "new.txt").write_text("untracked")
    Path(git(d, "rev-parse", "--absolute-git-dir"), "index.lock").write_text("")
    git(repo, "worktree", "lock", str(paths["locked"]))
    subprocess.run(["rm", "-rf", str(paths["gone"])], check=True)

    repaired = Worktrees(repo).start(["mid-rebase", "dirty", "locked", "gone"])

    listed = git(repo, "worktree", "list", "--porcelain")
    for name, path in repaired.items():
        gitdir = Path(git(path, "rev-parse", "--absolute-git-dir"))
        assert in_progress(gitdir) == [], name
        assert git(path, "status", "--porcelain") == "", name
        assert f"worktree {path}" in listed
    assert "\nlocked" not in listed
    assert (repaired["gone"] / "README.md").read_text() == "demo\n"
    assert subprocess.run(["git", "fsck", "--no-progress"], cwd=repo).returncode == 0


def test_tasks_editing_different_files_land_linearly_one_commit_each(repo: Path) -> None:
    wt = Worktrees(repo)
    wt.start(["w1", "w2", "w3"])
    for n, worker in enumerate(["w1", "w2", "w3"], 1):  # all cut from the same head
        work(wt, worker, f"t{n}", {f"f{n}.txt": f"{n}\n"})
    results = [wt.integrate(w, f"t{n}") for n, w in enumerate(["w1", "w2", "w3"], 1)]

    assert [r.status for r in results] == ["merged"] * 3
    assert history(repo) == ["task t3", "task t2", "task t1", "initial"]
    assert git(repo, "rev-list", "--merges", "main") == ""
    for n in (1, 2, 3):
        sha = git(repo, "log", "--format=%H", f"--grep=task t{n}", "main")
        assert git(repo, "show", "--format=", "--name-only", sha) == f"f{n}.txt"
    assert results[-1].commit == git(repo, "rev-parse", "main")
    assert wt.branches() == []  # merged task branches are deleted


def test_same_line_edits_second_reports_conflict_and_nothing_is_left_mid_rebase(repo: Path) -> None:
    wt = Worktrees(repo)
    wt.start(["w1", "w2"])
    work(wt, "w1", "t1", {"shared.txt": "one\nTWO from t1\nthree\n"})
    p2 = work(wt, "w2", "t2", {"shared.txt": "one\nTWO from t2\nthree\n"})
    t2_tip = git(p2, "rev-parse", "HEAD")

    assert wt.integrate("w1", "t1").status == "merged"
    head = git(repo, "rev-parse", "main")
    second = wt.integrate("w2", "t2")

    assert second.status == "conflict"
    assert second.conflict_files == ["shared.txt"]
    assert "shared.txt" in second.diffstat and "task t1" in second.diffstat
    assert "shared.txt" in second.note() and "ralph/t2" in second.note()
    assert git(repo, "rev-parse", "main") == head
    assert in_progress(Path(git(p2, "rev-parse", "--absolute-git-dir"))) == []
    assert in_progress(repo / ".git") == []
    assert git(p2, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "ralph/t2") == t2_tip  # branch kept for the record
    assert "ralph/t2" in wt.branches()

    # The retry starts from the new head (the branch is reset then) and merges.
    work(wt, "w2", "t2", {"shared.txt": "one\nTWO from t1 and t2\nthree\n"}, "task t2 retry")
    assert wt.integrate("w2", "t2").status == "merged"
    assert history(repo) == ["task t2 retry", "task t1", "initial"]


def test_failing_lease_check_leaves_target_and_checkout_unmoved(repo: Path) -> None:
    wt = Worktrees(repo)
    wt.start(["zombie"])
    work(wt, "zombie", "t1", {"z.txt": "zombie\n"})
    head = git(repo, "rev-parse", "main")
    calls = []

    def lost() -> bool:
        calls.append(True)
        return False

    def raises() -> bool:
        raise errors.LeaseLostError("cannot complete t1: fencing token 1 is stale")

    assert wt.integrate("zombie", "t1", check_lease=lost).status == "lease_lost"
    result = wt.integrate("zombie", "t1", check_lease=raises)
    assert result.status == "lease_lost" and "stale" in result.message
    assert calls == [True]
    assert git(repo, "rev-parse", "main") == head
    assert not (repo / "z.txt").exists()


def test_worker_whose_task_was_taken_over_cannot_merge_it(repo: Path) -> None:
    wt = Worktrees(repo)
    wt.start(["old", "new"])
    work(wt, "old", "t1", {"old.txt": "stale work\n"})
    work(wt, "new", "t1", {"new.txt": "fresh work\n"})  # takes the branch over

    assert wt.integrate("old", "t1").status == "lease_lost"
    assert wt.integrate("new", "t1").status == "merged"
    assert not (repo / "old.txt").exists() and (repo / "new.txt").exists()
    assert history(repo) == ["task t1", "initial"]


def test_clean_main_checkout_on_target_is_updated_with_the_merge(repo: Path) -> None:
    wt = Worktrees(repo)
    wt.start(["w1"])
    work(wt, "w1", "t1", {"feature.txt": "new\n", "README.md": "demo v2\n"})
    (repo / "scratch.txt").write_text("user's untracked notes")

    result = wt.integrate("w1", "t1")

    assert result.status == "merged" and result.checkout_updated
    assert (repo / "feature.txt").read_text() == "new\n"
    assert (repo / "README.md").read_text() == "demo v2\n"
    assert git(repo, "status", "--porcelain") == "?? scratch.txt"
    assert "ralph: merge ralph/t1" in git(repo, "reflog", "-1", "main")


def test_dirty_main_checkout_on_target_is_left_untouched_and_blocks_the_merge(repo: Path) -> None:
    wt = Worktrees(repo)
    wt.start(["w1"])
    work(wt, "w1", "t1", {"feature.txt": "new\n"})
    (repo / "README.md").write_text("user is editing\n")
    head = git(repo, "rev-parse", "main")

    blocked = wt.integrate("w1", "t1")

    assert blocked.status == "blocked" and "README.md" in blocked.message
    assert git(repo, "rev-parse", "main") == head
    assert (repo / "README.md").read_text() == "user is editing\n"
    assert not (repo / "feature.txt").exists()
    assert git(repo, "status", "--porcelain") == "M README.md"
    git(repo, "checkout", "--", "README.md")  # once the user is done, the retry merges
    assert wt.integrate("w1", "t1").status == "merged"
    assert (repo / "feature.txt").exists()


def test_target_not_checked_out_in_main_repo_moves_only_the_ref(repo: Path) -> None:
    git(repo, "branch", "work")
    wt = Worktrees(repo, target="work")
    wt.start(["w1"])
    work(wt, "w1", "t1", {"feature.txt": "new\n"})
    (repo / "README.md").write_text("dirty on main, which is not the target\n")

    result = wt.integrate("w1", "t1")

    assert result.status == "merged" and not result.checkout_updated
    assert history(repo, "work") == ["task t1", "initial"]
    assert history(repo, "main") == ["initial"]
    assert not (repo / "feature.txt").exists()


def test_several_commits_of_one_task_land_as_one_commit_with_the_last_message(repo: Path) -> None:
    wt = Worktrees(repo)
    wt.start(["w1"])
    path = work(wt, "w1", "t1", {"a.txt": "a\n"}, "agent's own commit")
    (path / "b.txt").write_text("b\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Add a and b\n\nTask: t1")

    assert wt.integrate("w1", "t1").status == "merged"
    assert history(repo) == ["Add a and b", "initial"]
    assert git(repo, "show", "--format=", "--name-only", "main").split() == ["a.txt", "b.txt"]


def test_branch_without_commits_integrates_as_empty(repo: Path) -> None:
    wt = Worktrees(repo)
    wt.start(["w1"])
    wt.prepare("w1", "t1")
    assert wt.integrate("w1", "t1").status == "empty"
    assert history(repo) == ["initial"]


def test_outside_a_repository_or_detached_head_is_a_usage_error(tmp_path: Path, repo: Path) -> None:
    with pytest.raises(errors.UsageError, match="not inside a git repository"):
        Worktrees(tmp_path / "nowhere")
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(errors.UsageError, match="detached"):
        Worktrees(repo)
    with pytest.raises(errors.UsageError, match="no branch named 'nope'"):
        Worktrees(repo, target="nope")


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ralph.worktrees import MergeLock
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


INTEGRATE_MANY = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    from ralph.worktrees import Worktrees
    repo, worker, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    wt = Worktrees(repo)
    wt.start([worker])
    while not go.exists():
        time.sleep(0.005)
    for n in range(4):
        task = f"{worker}-{n}"
        path = wt.prepare(worker, task)
        (path / f"{task}.txt").write_text(task)
        subprocess.run(["git", "add", "-A"], cwd=path, check=True)
        subprocess.run(["git", "commit", "-qm", task], cwd=path, check=True)
        print(wt.integrate(worker, task).status, flush=True)
""")


def test_two_processes_integrating_at_once_take_turns_under_the_merge_lock(
    repo: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", INTEGRATE_MANY, str(repo), name, str(go)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("p1", "p2")
    ]
    go.write_text("")
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]

    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [["merged"] * 4] * 2
    subjects = history(repo)
    assert len(subjects) == 9 and sorted(subjects[:-1]) == sorted(
        f"{w}-{n}" for w in ("p1", "p2") for n in range(4)
    )
    assert git(repo, "rev-list", "--merges", "main") == ""
    assert git(repo, "status", "--porcelain") == ""
