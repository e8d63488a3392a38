"""The user's uncommitted work is never overwritten, and machine faults never hang or wedge a run.

Each test is a real `ralph run` (real CLI, real git, real agent processes) with the user's
action or the fault done for real at a deterministic point: a `git` wrapper first on PATH that
acts when ralph runs a given git command. Afterwards: every task done with one commit on main,
the user's files byte-identical, `git fsck` clean.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from gitutil import git, init_repo

from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]
KINDS = {"checkout": [], "workers2": ["--workers", "2"]}
REAL_GIT = shutil.which("git") or "git"


@dataclass
class Project:
    """A repository, its store, and the environment every `ralph` of the test runs with."""

    root: Path
    tmp: Path
    env: dict[str, str]

    def ralph(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        return run_ralph(*args, cwd=self.root, env={**self.env, **env}, timeout=timeout)

    def add(self, *ids: str) -> None:
        for task_id in ids:
            result = self.ralph("add", f"Task {task_id}", "--id", task_id)
            assert result.returncode == 0, result.stderr

    def run(self, agent: str, *flags: str, args: tuple[str, ...] = (), **env: str):  # noqa: ANN201
        cmd = shlex.join([sys.executable, str(AGENTS / agent), *args])
        config = self.tmp / "ralph.toml"
        config.write_text('backoff = "0.1s"\npoll = "0.1s"\nkill_grace = 2.0\n')
        return self.ralph(
            "run", "--agent-cmd", cmd, "--config", str(config), "--no-live", *flags, **env
        )

    def statuses(self) -> dict[str, str]:
        listed = json.loads(self.ralph("list", "--json").stdout)
        return {t["id"]: t["status"] for t in listed}

    def wrap_git(self, script: str) -> str:
        """A `git` wrapper running `script` (sh) before the real git; returns the PATH."""
        folder = self.tmp / "wrapper"
        folder.mkdir(exist_ok=True)
        wrapper = folder / "git"
        wrapper.write_text(f'#!/bin/sh\n{script}\nexec {REAL_GIT} "$@"\n')
        wrapper.chmod(0o755)
        return f"{folder}:{self.env['PATH']}"

    def check(self, tasks: list[str], user: dict[str, bytes]) -> None:
        """Every task done with exactly one commit on main (its ref naming it) holding its
        work file, the user's files byte-identical, the repository sound."""
        assert self.statuses() == dict.fromkeys(tasks, "done")
        fmt = "--format=%H %(trailers:key=Task,valueonly,separator=|)"
        log = git(self.root, "log", fmt, "main").splitlines()
        per_task = Counter(line.partition(" ")[2] for line in log if line.partition(" ")[2])
        assert dict(per_task) == dict.fromkeys(tasks, 1), per_task
        for task in tasks:
            assert git(self.root, "show", f"main:work/{task}.txt") == f"{task} was here"
            sha = git(self.root, "rev-parse", f"refs/ralph/tasks/{task}")
            assert git(self.root, "merge-base", "--is-ancestor", sha, "main") == ""
        for name, data in user.items():
            assert (self.root / name).read_bytes() == data, name
        git(self.root, "fsck", "--no-progress", "--strict")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = init_repo(tmp_path / "repo", {"README.md": "start\n", "notes.txt": "notes\n"})
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env["HOME"] = str(tmp_path / "home")
    return Project(root, tmp_path, env)


# -- the main checkout follows the target without losing a byte of the user's ----------------

KILL_AT_MAIN_UPDATE = """
case " $* " in
*" read-tree -m -u "*|*" update-index -z --index-info "*)
    if [ "$(pwd -P)" = "$MAIN" ] && [ -e "$TRIGGER" ]; then
        rm -f "$TRIGGER"
        kill -9 $PPID  # the whole run, with the main checkout's update half done
        exit 1
    fi;;
esac
"""


def test_an_edit_made_after_a_kill_mid_main_update_is_kept_by_the_next_run(
    project: Project,
) -> None:
    project.add("T1")
    trigger = project.tmp / "trigger"
    trigger.write_text("")
    path = project.wrap_git(KILL_AT_MAIN_UPDATE)
    main = str(project.root.resolve())

    killed = project.run("appends.py", "--workers", "2", PATH=path, MAIN=main, TRIGGER=str(trigger))

    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not trigger.exists()
    assert (project.root / ".ralph" / "main-sync.json").exists()
    mine = b"the user's words, typed after the kill\r\n"
    (project.root / "README.md").write_bytes(mine)
    (project.root / "notes.txt").write_bytes(b"notes the user keeps\n")
    project.add("T2")

    second = project.run("edit.py", "--workers", "2")

    assert second.returncode == 0, second.stderr[-2000:]
    assert "kept your uncommitted changes to README.md" in second.stderr
    saved = git(project.root, "for-each-ref", "--format=%(refname)", "refs/ralph/saved/")
    assert saved and git(project.root, "show", f"{saved}:README.md") == mine.decode().strip()
    assert git(project.root, "show", "main:README.md") == "start\nT1 appended this"
    project.check(["T1", "T2"], {"README.md": mine, "notes.txt": b"notes the user keeps\n"})
    assert not (project.root / ".ralph" / "main-sync.json").exists()


SAVE_AT_MAIN_MOVE = """
case " $* " in
*" read-tree -m -u "*|*" update-ref --stdin "*|*" update-ref refs/heads/main "*)
    if [ "$(pwd -P)" = "$MAIN" ] && [ -e "$TRIGGER" ]; then
        rm -f "$TRIGGER"
        printf 'saved by the user just now\\n' >> README.md
    fi;;
esac
"""


@pytest.mark.parametrize("mode", ["workers2", "remote"])
def test_a_file_saved_after_the_main_checkout_was_checked_is_never_overwritten(
    project: Project, mode: str
) -> None:
    flags = ["--workers", "2"]
    if mode == "remote":  # the local branch follows the remote's: the same main-checkout move
        bare = project.tmp / "remote.git"
        git(project.tmp, "clone", "-q", "--bare", str(project.root), str(bare))
        git(project.root, "remote", "add", "origin", str(bare))
        git(project.root, "fetch", "-q", "origin")
        flags = ["--remote", "origin"]
    project.add("T1")
    trigger = project.tmp / "trigger"
    trigger.write_text("")
    path = project.wrap_git(SAVE_AT_MAIN_MOVE)

    result = project.run(
        "appends.py",
        *flags,
        PATH=path,
        MAIN=str(project.root.resolve()),
        TRIGGER=str(trigger),
    )

    assert not trigger.exists()  # the user saved between the check and the move
    assert result.returncode == 0, result.stderr[-2000:]
    assert "kept your uncommitted changes to README.md" in result.stderr
    mine = b"start\nsaved by the user just now\n"
    saved = git(project.root, "for-each-ref", "--format=%(refname)", "refs/ralph/saved/")
    assert saved in result.stderr
    assert git(project.root, "show", f"{saved}:README.md").encode() == mine.strip()
    assert git(project.root, "show", "main:README.md") == "start\nT1 appended this"
    project.check(["T1"], {"README.md": mine})


# -- machine faults --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_an_index_lock_an_agent_left_in_the_main_checkout_is_cleared_and_every_task_lands(
    project: Project, kind: str
) -> None:
    project.add("T1", "T2", "T3")

    result = project.run("damages_main_index.py", *KINDS[kind], timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    assert not (project.root / ".git" / "index.lock").exists()
    project.check(["T1", "T2", "T3"], {"README.md": b"start\n", "notes.txt": b"notes\n"})
    assert git(project.root, "status", "--porcelain") == ""


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_main_index_git_cannot_read_is_rebuilt_and_every_task_lands(
    project: Project, kind: str
) -> None:
    # T1's agent empties the index while no landing is under way (T2 and T3 wait for T1). One
    # doing it while another worker's landing moves the main checkout is a race this repair
    # does not cover yet (README, under "A stale `.git/index.lock`").
    project.add("T1")
    for task_id in ("T2", "T3"):
        added = project.ralph("add", f"Task {task_id}", "--id", task_id, "--blocked-by", "T1")
        assert added.returncode == 0, added.stderr

    result = project.run("damages_main_index.py", *KINDS[kind], args=("index", "T1"), timeout=120)

    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"could not read the index of .*\): rebuilt it from \S+", result.stderr)
    assert (project.root / ".git" / "index.damaged").stat().st_size == 0
    project.check(["T1", "T2", "T3"], {"README.md": b"start\n", "notes.txt": b"notes\n"})
    assert git(project.root, "status", "--porcelain") == ""


def test_an_index_lock_a_live_git_holds_makes_the_landing_wait_until_it_ends(
    project: Project,
) -> None:
    project.add("T1")
    lock = project.root / ".git" / "index.lock"
    holder = subprocess.Popen(  # a live process with the lock open, as a running git has it
        [sys.executable, "-c", "import sys; f = open(sys.argv[1], 'w'); sys.stdin.read()", lock],
        stdin=subprocess.PIPE,
    )
    try:
        run = subprocess.Popen(
            [*RALPH, "run", "--agent-cmd", shlex.join([sys.executable, str(AGENTS / "edit.py")])]
            + ["--workers", "2", "--no-live"],
            cwd=project.root,
            env=project.env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert run.stderr is not None
        for line in run.stderr:  # the landing says it waits, and for whom
            if "waiting to land" in line:
                assert "index lock" in line and f"pid {holder.pid}" in line
                break
        else:
            pytest.fail("the run ended without waiting for the index lock")
        assert lock.exists()  # never taken from a live holder
    finally:
        holder.communicate(b"")
    lock.unlink()  # the holder ends the way git does: its lock goes
    rest = run.communicate(timeout=120)[1]
    assert run.returncode == 0, rest[-2000:]
    project.check(["T1"], {"README.md": b"start\n", "notes.txt": b"notes\n"})


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_project_whose_gitignore_lists_ralph_runs_and_commits_normally(
    project: Project, kind: str
) -> None:
    (project.root / ".gitignore").write_text(".ralph\n")
    git(project.root, "add", ".gitignore")
    git(project.root, "commit", "-q", "-m", "ignore .ralph")
    project.add("T1", "T2")

    result = project.run("edit.py", *KINDS[kind])

    assert result.returncode == 0, result.stderr[-2000:]
    project.check(["T1", "T2"], {"README.md": b"start\n", "notes.txt": b"notes\n"})
    for task in ("T1", "T2"):
        files = git(project.root, "show", "--name-only", "--format=", f"refs/ralph/tasks/{task}")
        assert [f for f in files.splitlines() if f != "progress.md"] == [f"work/{task}.txt"]
    assert git(project.root, "status", "--porcelain") == ""

    again = project.run("edit.py", *KINDS[kind])  # and the next run starts
    assert again.returncode == 0, again.stderr[-2000:]


# -- --allow-dirty: the user's own paths are theirs ------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_allow_dirty_an_agent_change_to_a_user_dirty_file_fails_the_attempt_and_is_undone(
    project: Project, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        project.env["RALPH_DB"] = request.getfixturevalue("pg_url")
    mine = b"start\nthe user's draft, not committed\r\n"
    (project.root / "README.md").write_bytes(mine)
    (project.root / "draft.txt").write_bytes(b"an untracked draft\n")
    (project.root / "notes.txt").write_bytes(b"notes, staged by the user\n")
    git(project.root, "add", "notes.txt")
    project.add("T1")

    failed = project.run(
        "appends.py", "--allow-dirty", "--max-attempts", "1", args=("README.md", "notes.txt")
    )

    assert "README.md" in failed.stderr, failed.stderr[-2000:]
    assert project.statuses() == {"T1": "failed"}
    shown = json.loads(project.ralph("show", "T1", "--json").stdout)
    assert "README.md" in json.dumps(shown) and "uncommitted" in json.dumps(shown)
    assert (project.root / "README.md").read_bytes() == mine
    assert (project.root / "draft.txt").read_bytes() == b"an untracked draft\n"
    assert not (project.root / "work" / "T1.txt").exists()
    assert git(project.root, "rev-list", "--count", "main") == "1"  # nothing landed
    assert (project.root / "notes.txt").read_bytes() == b"notes, staged by the user\n"
    assert git(project.root, "show", ":notes.txt") == "notes, staged by the user"
    assert git(project.root, "status", "--porcelain") == "M README.md\nM  notes.txt\n?? draft.txt"

    project.add("T2")  # a task that leaves the user's paths alone lands, without them
    landed = project.run("edit.py", "--allow-dirty")
    assert landed.returncode == 0, landed.stderr[-2000:]
    files = git(project.root, "show", "--name-only", "--format=", "refs/ralph/tasks/T2")
    assert [f for f in files.splitlines() if f != "progress.md"] == ["work/T2.txt"]
    assert (project.root / "README.md").read_bytes() == mine
    assert (project.root / "draft.txt").read_bytes() == b"an untracked draft\n"
    git(project.root, "fsck", "--no-progress", "--strict")


def _small_disk(tmp_path: Path) -> Path:
    """A 6 MB tmpfs (root only): the disk that fills up."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    return disk


@pytest.mark.parametrize("db", ["sqlite_elsewhere", "sqlite_on_the_full_disk", "postgres"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_full_disk_fails_the_attempt_keeps_its_marker_and_the_next_run_completes(
    tmp_path: Path, kind: str, db: str, request: pytest.FixtureRequest
) -> None:
    disk = _small_disk(tmp_path)
    try:
        root = init_repo(disk / "repo", {"README.md": "start\n", "notes.txt": "notes\n"})
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
        }
        env["HOME"] = str(tmp_path / "home")
        if db == "sqlite_elsewhere":
            env["RALPH_DB"] = str(tmp_path / "ralph.db")
        elif db == "postgres":
            env["RALPH_DB"] = request.getfixturevalue("pg_url")
        project = Project(root, tmp_path, env)
        ballast = disk / "ballast"  # what the user deletes to free space
        ballast.write_bytes(os.urandom(1_500_000))
        project.add("T1")
        fill = tmp_path / "fill-once"
        fill.write_text("")

        # A short lease: a store on the full disk cannot record the release, so the claim
        # is taken back by its expiry, as after any crash.
        flags = [*KINDS[kind], "--lease", "4s"]
        full = project.run("fills_disk.py", *flags, FILL_ONCE=str(fill))

        assert not fill.exists()
        assert "Traceback" not in full.stderr and "cannot rollback" not in full.stderr
        # A clean stop, not a crash: the workspace's error, or the store's when the store
        # itself cannot be written (then the attempt cannot be recorded either).
        code = 7 if db == "sqlite_on_the_full_disk" else 9
        assert full.returncode == code, full.stderr[-3000:]
        assert "disk is full" in full.stderr.splitlines()[-1]
        assert project.statuses() == {"T1": "open"}
        markers = [root / ".ralph" / "checkout.json"]
        markers += list((root / ".ralph" / "worktrees").glob("*.json"))
        assert any(m.exists() for m in markers)  # the attempt's files are still there

        ballast.unlink()
        again = project.run("fills_disk.py", *flags, FILL_ONCE=str(fill))

        assert again.returncode == 0, again.stderr[-3000:]
        project.check(["T1"], {"README.md": b"start\n", "notes.txt": b"notes\n"})
        files = git(root, "show", "--name-only", "--format=", "refs/ralph/tasks/T1")
        assert [f for f in files.splitlines() if f != "progress.md"] == ["work/T1.txt"]
        assert git(root, "status", "--porcelain") == ""
        patches = list((root / ".ralph" / "runs" / "T1").glob("*/leftovers.patch"))
        patches += list((root / ".ralph" / "runs" / "T1").glob("*/changes.patch"))
        assert any("work/T1.big" in p.read_text() for p in patches)  # the work was kept
    finally:
        subprocess.run(["umount", "-l", str(disk)])
