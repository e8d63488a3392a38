"""CheckoutWorkspace: one worker in the repository's own checkout, on real repositories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from gitutil import git, init_repo

from ralph.errors import LeaseLostError, WorkspaceError
from ralph.store import ensure_ralph_dir
from ralph.workspace.checkout import CheckoutWorkspace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "repo", {"keep.txt": "keep\n", "old name.txt": "rename me\n"})
    ensure_ralph_dir(root)
    return root


def no_fence() -> None:
    """The claim is still ours."""


def names(root: Path, sha: str) -> list[str]:
    return sorted(
        git(root, "show", "--no-renames", "--format=", "--name-only", "-z", sha).split("\0")[:-1]
    )


def test_an_attempts_edits_new_deleted_and_renamed_paths_land_as_one_commit(
    root: Path, tmp_path: Path
):
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    base = ws.prepare("t1", 1, tmp_path / "run")
    assert base == git(root, "rev-parse", "main")
    assert json.loads((root / ".ralph" / "checkout.json").read_text())["task"] == "t1"
    (root / "keep.txt").write_text("edited\n")
    (root / "sub dir").mkdir()
    (root / "sub dir" / "ü.txt").write_text("new\n")
    (root / "-dash.txt").write_text("dash\n")
    git(root, "mv", "old name.txt", "new name.txt")
    (root / ".ralph" / "runs").mkdir()
    (root / ".ralph" / "runs" / "log").write_text("log\n")

    collected = ws.collect("t1", 1, base)
    landing = ws.land("t1", collected, "Task one\n\nTask: t1\n", no_fence)

    assert sorted(c.path for c in collected.changes) == [
        "-dash.txt",
        "keep.txt",
        "new name.txt",
        "old name.txt",
        "sub dir/ü.txt",
    ]
    assert landing.status == "landed"
    assert landing.commit == git(root, "rev-parse", "main") == git(root, "rev-parse", "HEAD")
    assert git(root, "rev-parse", "refs/ralph/tasks/t1") == landing.commit
    assert ws.landed("t1") == landing.commit and ws.landed_all() == {"t1": landing.commit}
    assert names(root, landing.commit) == [
        "-dash.txt",
        "keep.txt",
        "new name.txt",
        "old name.txt",
        "sub dir/ü.txt",
    ]
    assert git(root, "status", "--porcelain") == ""
    assert not (root / ".ralph" / "checkout.json").exists()


def test_discard_keeps_a_patch_and_restores_the_base(root: Path, tmp_path: Path):
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    base = ws.prepare("t1", 1, tmp_path / "run")
    (root / "keep.txt").write_text("ruined\n")
    (root / "old name.txt").unlink()
    (root / "junk").mkdir()
    (root / "junk" / "new.txt").write_text("junk\n")
    (root / "staged.txt").write_text("staged\n")
    git(root, "add", "staged.txt")
    patch = tmp_path / "run" / "changes.patch"

    kept = ws.discard("t1", 1, patch)

    assert kept == [str(patch)]
    assert git(root, "status", "--porcelain") == ""
    assert git(root, "rev-parse", "HEAD") == base
    assert (root / "keep.txt").read_text() == "keep\n" and (root / "old name.txt").exists()
    text = patch.read_text()
    assert "ruined" in text and "junk/new.txt" in text and "staged.txt" in text


def test_discard_keeps_an_agents_commits_under_an_attempt_ref_and_puts_the_branch_back(
    root: Path, tmp_path: Path
):
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    base = ws.prepare("t1", 2, tmp_path / "run")
    (root / "a.txt").write_text("a\n")
    git(root, "add", "a.txt")
    git(root, "commit", "-qm", "agent's own commit", env=ws.agent_env())
    agent_commit = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-qb", "elsewhere")

    kept = ws.discard("t1", 2, tmp_path / "run" / "changes.patch")

    assert "refs/ralph/attempts/t1/2" in kept
    assert git(root, "rev-parse", "refs/ralph/attempts/t1/2") == agent_commit
    assert git(root, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(root, "rev-parse", "main") == base
    assert git(root, "status", "--porcelain") == "" and not (root / "a.txt").exists()


def test_a_dirty_tree_is_refused_unless_allowed(root: Path):
    (root / "keep.txt").write_text("user edit\n")
    with pytest.raises(WorkspaceError, match="uncommitted changes \\(keep.txt\\)") as caught:
        CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    assert "--allow-dirty" in (caught.value.hint or "")
    assert CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root), allow_dirty=True).baseline == [
        "keep.txt"
    ]
    (root / ".ralph" / "notes.txt").write_text("ours\n")
    git(root, "checkout", "--", "keep.txt")
    CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))  # .ralph/ is never the user's dirt


def test_allow_dirty_never_commits_or_touches_the_users_paths(root: Path, tmp_path: Path):
    (root / "keep.txt").write_text("user edit\n")
    (root / "mine.txt").write_text("user's own staged work\n")
    git(root, "add", "mine.txt")
    (root / "notes.txt").write_text("user's untracked notes\n")
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root), allow_dirty=True)
    base = ws.prepare("t1", 1, tmp_path / "run")
    (root / "agent.txt").write_text("agent\n")
    (root / "old name.txt").write_text("agent edit\n")

    collected = ws.collect("t1", 1, base)
    landing = ws.land("t1", collected, "Agent work\n\nTask: t1\n", no_fence)

    assert sorted(c.path for c in collected.changes) == ["agent.txt", "old name.txt"]
    assert landing.status == "landed"
    assert names(root, landing.commit or "") == ["agent.txt", "old name.txt"]
    assert git(root, "show", f"{landing.commit}:keep.txt") == "keep"
    assert (root / "keep.txt").read_text() == "user edit\n"
    assert (root / "notes.txt").read_text() == "user's untracked notes\n"
    assert git(root, "diff", "--cached", "--name-only").split() == ["mine.txt"]
    assert sorted(git(root, "status", "--porcelain").splitlines()) == [
        "?? notes.txt",
        "A  mine.txt",
        "M keep.txt",  # (stripped: " M", changed in the tree, not staged)
    ]


def test_allow_dirty_discard_reverts_only_the_attempts_paths(root: Path, tmp_path: Path):
    (root / "keep.txt").write_text("user edit\n")
    (root / "notes.txt").write_text("user's untracked notes\n")
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root), allow_dirty=True)
    ws.prepare("t1", 1, tmp_path / "run")
    (root / "agent.txt").write_text("agent\n")
    (root / "old name.txt").write_text("agent edit\n")

    kept = ws.discard("t1", 1, tmp_path / "run" / "changes.patch")

    assert kept == [str(tmp_path / "run" / "changes.patch"), "reverted 2 path(s) of the attempt"]
    assert not (root / "agent.txt").exists()
    assert (root / "old name.txt").read_text() == "rename me\n"
    assert (root / "keep.txt").read_text() == "user edit\n"
    assert (root / "notes.txt").read_text() == "user's untracked notes\n"


def test_landing_refuses_a_target_that_moved_a_task_already_landed_and_a_lost_claim(
    root: Path, tmp_path: Path
):
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    base = ws.prepare("t1", 1, tmp_path / "run")
    (root / "a.txt").write_text("a\n")
    collected = ws.collect("t1", 1, base)

    def lost() -> None:
        raise LeaseLostError("cannot complete t1: fencing token 1 is stale")

    with pytest.raises(LeaseLostError, match="stale"):
        ws.land("t1", collected, "t1", lost)
    assert git(root, "rev-parse", "main") == base
    assert ws.landed("t1") is None

    first = ws.land("t1", collected, "t1", no_fence)
    assert first.status == "landed"
    again = ws.land("t1", collected, "t1 again", no_fence)
    assert (again.status, again.commit) == ("already", first.commit)

    second = ws.prepare("t2", 1, tmp_path / "run2")
    (root / "b.txt").write_text("b\n")
    collected = ws.collect("t2", 1, second)
    git(root, "commit", "-q", "--allow-empty", "-m", "the user commits while verify runs")
    user = git(root, "rev-parse", "main")
    moved = ws.land("t2", collected, "t2", no_fence)
    assert moved.status == "moved" and "moved from" in moved.note
    assert git(root, "rev-parse", "main") == user and ws.landed("t2") is None


def test_a_killed_attempts_leftovers_are_saved_as_a_patch_and_cleaned_at_start(
    root: Path, tmp_path: Path
):
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    ws.prepare("t1", 1, tmp_path / "run")
    (root / "keep.txt").write_text("half written\n")
    (root / "new.txt").write_text("untracked\n")
    del ws  # killed: the marker stays

    again = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))

    patch = tmp_path / "run" / "leftovers.patch"
    assert again.leftovers == [str(patch)]
    assert "half written" in patch.read_text() and "new.txt" in patch.read_text()
    assert git(root, "status", "--porcelain") == ""
    assert not (root / ".ralph" / "checkout.json").exists()


def test_hooks_and_config_an_agent_changed_are_put_back(root: Path, tmp_path: Path):
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    base = ws.prepare("t1", 1, tmp_path / "run")
    config = (root / ".git" / "config").read_text()
    hook = root / ".git" / "hooks" / "reference-transaction"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    git(root, "config", "core.hooksPath", "/nowhere")
    (root / "a.txt").write_text("a\n")

    collected = ws.collect("t1", 1, base)

    assert not hook.exists()
    assert (root / ".git" / "config").read_text() == config
    assert any("reference-transaction" in line for line in collected.repairs)
    assert ws.land("t1", collected, "t1", no_fence).status == "landed"


def test_a_detached_head_is_refused(root: Path):
    git(root, "checkout", "-q", "--detach")
    with pytest.raises(WorkspaceError, match="detached"):
        CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))


def test_allow_dirty_takes_the_agents_paths_literally_never_as_patterns(root: Path, tmp_path: Path):
    (root / "keep.txt").write_text("user edit\n")
    (root / "notes.txt").write_text("user's untracked notes\n")
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root), allow_dirty=True)
    base = ws.prepare("t1", 1, tmp_path / "run")
    (root / "*.txt").write_text("an agent's file with a glob for a name\n")

    collected = ws.collect("t1", 1, base)
    landing = ws.land("t1", collected, "Agent work\n\nTask: t1\n", no_fence)

    assert [c.path for c in collected.changes] == ["*.txt"]
    assert landing.status == "landed"
    assert names(root, landing.commit or "") == ["*.txt"]
    assert git(root, "show", f"{landing.commit}:keep.txt") == "keep"
    assert (root / "keep.txt").read_text() == "user edit\n"


def test_allow_dirty_discard_keeps_a_patch_of_the_attempts_paths(root: Path, tmp_path: Path):
    (root / "keep.txt").write_text("user edit\n")
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root), allow_dirty=True)
    ws.prepare("t1", 1, tmp_path / "run")
    (root / "agent.txt").write_text("the agent's half-done work\n")
    patch = tmp_path / "run" / "changes.patch"

    kept = ws.discard("t1", 1, patch)

    assert str(patch) in kept
    text = patch.read_text()
    assert "the agent's half-done work" in text and "user edit" not in text
    assert not (root / "agent.txt").exists()
    assert (root / "keep.txt").read_text() == "user edit\n"


LIVE_ATTEMPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ralph.workspace.checkout import CheckoutWorkspace
    from ralph.store import ensure_ralph_dir
    root, flags = Path(sys.argv[1]), Path(sys.argv[2])
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    ws.prepare("t1", 1, flags / "run")
    (root / "live.txt").write_text("an agent is writing this\\n")
    (flags / "started").write_text("")
    while not (flags / "done").exists():
        time.sleep(0.02)
""")


def test_a_checkout_a_live_run_is_working_in_is_refused_and_cleaned_once_that_run_died(
    root: Path, tmp_path: Path
):
    flags = tmp_path / "flags"
    flags.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", LIVE_ATTEMPT, str(root), str(flags)], env=env, cwd=root
    )
    try:
        while not (flags / "started").exists():
            assert proc.poll() is None
            time.sleep(0.02)
        with pytest.raises(WorkspaceError, match=f"pid {proc.pid}"):
            CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root), allow_dirty=True)
        assert (root / "live.txt").read_text() == "an agent is writing this\n"
        assert (root / ".ralph" / "checkout.json").exists()
        assert not (flags / "run" / "leftovers.patch").exists()
        proc.kill()  # now the run dies mid-attempt: the next start cleans up after it
        proc.wait(timeout=30)
        assert CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root)).leftovers == [
            str(flags / "run" / "leftovers.patch")
        ]
        assert "an agent is writing this" in (flags / "run" / "leftovers.patch").read_text()
        assert git(root, "status", "--porcelain") == ""
    finally:
        (flags / "done").write_text("")
        proc.kill()
        proc.wait(timeout=30)


def test_a_killed_attempts_commits_and_branch_switch_are_taken_back_at_start(
    root: Path, tmp_path: Path
):
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    base = ws.prepare("t1", 3, tmp_path / "run")
    (root / "b.txt").write_text("committed by the agent\n")
    git(root, "add", "b.txt")
    git(root, "commit", "-qm", "agent's own commit", env=ws.agent_env())
    agent_commit = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-qb", "side")
    (root / "c.txt").write_text("not committed\n")
    del ws  # killed: the marker stays

    again = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))

    assert again.target == "main"  # not the branch the agent left checked out
    assert git(root, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(root, "rev-parse", "main") == base  # no commit of the attempt stays on main
    assert git(root, "rev-parse", "refs/ralph/attempts/t1/3") == agent_commit
    patch = tmp_path / "run" / "leftovers.patch"
    assert str(patch) in again.leftovers
    assert "committed by the agent" in patch.read_text() and "not committed" in patch.read_text()
    assert git(root, "status", "--porcelain") == ""


def test_discard_never_moves_a_commit_the_user_made_during_the_attempt_off_the_branch(
    root: Path, tmp_path: Path
):
    ws = CheckoutWorkspace(root, ralph_dir=ensure_ralph_dir(root))
    ws.prepare("t1", 1, tmp_path / "run")
    (root / "agent.txt").write_text("the failed agent's file\n")
    (root / "user.txt").write_text("committed by hand\n")
    git(root, "add", "user.txt")
    git(root, "commit", "-qm", "the user's own commit")  # no attempt marker: not the agent's
    user = git(root, "rev-parse", "HEAD")

    kept = ws.discard("t1", 1, tmp_path / "run" / "changes.patch")

    assert git(root, "rev-parse", "main") == user
    assert git(root, "for-each-ref", "refs/ralph/attempts/") == ""
    assert (root / "user.txt").read_text() == "committed by hand\n"
    assert not (root / "agent.txt").exists() and git(root, "status", "--porcelain") == ""
    assert "the failed agent's file" in (tmp_path / "run" / "changes.patch").read_text()
    assert any("not made by the agent" in line for line in kept)
