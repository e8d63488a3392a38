"""The sandbox's per-attempt git view (ralph/sandbox/gitview.py), from outside: an agent that
commits, switches branch, stashes, tags and resets inside the sandbox changes no ref of the real
repository; its commits are kept under the attempt ref and listed in the task's commit, and a
reset below its base fails the attempt ("the agent rewound history") instead of landing a
revert. In the checkout and with two workers (worktrees)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from gitutil import git, init_repo
from pgserver import in_ci

from ralph.sandbox import bwrap
from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]
KINDS = {"checkout": [], "workers2": ["--workers", "2"]}

_exe, _why = bwrap.probe()
pytestmark = pytest.mark.skipif(
    _why is not None and not in_ci(), reason=f"the sandbox cannot run here: {_why}"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "repo", {"README.md": "# project\n"})
    (root / "NOTES.md").write_text("the base's own commit\n")
    git(root, "add", "NOTES.md")
    git(root, "commit", "-q", "-m", "second")
    return root


def tour(root: Path, kind: str, rewind: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
    env.update(HOME=str(root.parent / "home"), TOURIST_REWIND="1" if rewind else "0")

    def ralph(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RALPH, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )

    assert ralph("add", "Tour git", "--id", "T1").returncode == 0
    cmd = shlex.join([sys.executable, str(AGENTS / "git_tourist.py")])
    return ralph(
        "run", "--agent-cmd", cmd, "--sandbox", "--max-attempts", "1", "--json", *KINDS[kind]
    )


def real_refs(root: Path) -> list[str]:
    return git(root, "for-each-ref", "--format=%(refname)").splitlines()


@pytest.mark.parametrize("kind", KINDS)
def test_an_agents_commits_branches_stash_and_tags_stay_in_its_git_view(repo: Path, kind: str):
    base = git(repo, "rev-parse", "main")
    config = (repo / ".git" / "config").read_bytes()
    result = tour(repo, kind, rewind=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["done"] == 1
    assert git(repo, "rev-list", f"{base}..main").count("\n") == 0  # one commit: ralph's
    assert git(repo, "show", "main:out/T1.txt") == "T1: first\nT1: second"
    assert git(repo, "ls-tree", "--name-only", "main", "scratch-T1.txt") == ""
    body = git(repo, "log", "-1", "--format=%B", "main")
    assert "- agent: T1\n" in body and "- agent: T1 on its own branch" in body
    assert sorted(real_refs(repo)) == [
        "refs/heads/main",
        "refs/ralph/attempts/T1/1",
        "refs/ralph/tasks/T1",
    ]
    kept = "refs/ralph/attempts/T1/1"
    assert git(repo, "log", "-1", "--format=%s", kept) == "agent: T1 on its own branch"
    assert git(repo, "merge-base", "--is-ancestor", base, kept) == ""
    assert (repo / ".git" / "config").read_bytes() == config
    git(repo, "fsck", "--no-progress", "--strict")
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("kind", KINDS)
def test_a_reset_below_the_base_fails_the_attempt_as_a_rewind_and_lands_nothing(
    repo: Path, kind: str
):
    base = git(repo, "rev-parse", "main")
    result = tour(repo, kind, rewind=True)
    assert result.returncode == 13, result.stdout + result.stderr  # the task ended failed
    assert git(repo, "rev-parse", "main") == base
    show = subprocess.run(
        [*RALPH, "show", "T1", "--json"], cwd=repo, capture_output=True, text=True, check=True
    )
    task = json.loads(show.stdout)
    assert task["status"] == "failed"
    assert "the agent rewound history" in task["last_error"], task["last_error"]
    assert "rewound history" in result.stderr
    assert sorted(real_refs(repo)) == ["refs/heads/main", "refs/ralph/attempts/T1/1"]
    assert (repo / "NOTES.md").read_text() == "the base's own commit\n"
    git(repo, "fsck", "--no-progress", "--strict")
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.parametrize("kind", KINDS)
def test_a_symlink_in_the_git_view_cannot_pull_another_repositorys_objects_in(
    repo: Path, tmp_path: Path, kind: str
):
    """The view is the agent's to write, and ralph's git reads it on the host: a pack folder
    linked to a repository the agent cannot see must not bring that repository's commits in."""
    secret = init_repo(tmp_path / "secret", {"secret.txt": "not for this repository\n"})
    git(secret, "repack", "-a", "-d", "-q")
    sha = git(secret, "rev-parse", "HEAD")
    script = (
        'cat > /dev/null; gd=$(git rev-parse --absolute-git-dir); rm -rf "$gd/objects/pack"; '
        f'ln -s {shlex.quote(str(secret / ".git" / "objects" / "pack"))} "$gd/objects/pack"; '
        f'echo {sha} > "$gd/HEAD"; mkdir -p out; echo x > "out/$RALPH_TASK_ID.txt"'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
    env["HOME"] = str(tmp_path / "home")
    run = [*RALPH, "run", "--agent-cmd", shlex.join(["sh", "-c", script]), "--sandbox"]
    assert run_ralph("add", "Link", "--id", "L1", cwd=repo, env=env).returncode == 0
    result = subprocess.run(
        [*run, "--max-attempts", "1", *KINDS[kind]], cwd=repo, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    # With the link gone its HEAD names nothing: the attempt fails, nothing lands.
    assert result.returncode == 13, result.stdout + result.stderr
    assert "git HEAD unreadable" in result.stderr
    found = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", sha], capture_output=True)
    assert found.returncode != 0, "the other repository's commit was fetched in"
    git(repo, "fsck", "--no-progress", "--strict")


@pytest.mark.parametrize("kind", KINDS)
def test_an_agent_that_recreates_its_git_dir_after_a_rewind_lands_nothing(repo: Path, kind: str):
    """`git reset --hard HEAD~1`, then a fresh `git init` to hide it: the HEAD is unreadable,
    so the work tree (which undoes the base's commit) is not landed."""
    base = git(repo, "rev-parse", "main")
    script = (
        "cat > /dev/null; git reset -q --hard HEAD~1; gd=$(git rev-parse --absolute-git-dir); "
        'find "$gd" -mindepth 1 -delete; git init -q; mkdir -p out; echo x > out/R1.txt'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
    env["HOME"] = str(repo.parent / "home")
    assert run_ralph("add", "Hide", "--id", "R1", cwd=repo, env=env).returncode == 0
    run = [*RALPH, "run", "--agent-cmd", shlex.join(["sh", "-c", script]), "--sandbox"]
    result = subprocess.run(
        [*run, "--max-attempts", "1", *KINDS[kind]], cwd=repo, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 13, result.stdout + result.stderr
    assert "git HEAD unreadable" in result.stderr
    assert git(repo, "rev-parse", "main") == base
    assert (repo / "NOTES.md").read_text() == "the base's own commit\n"
    git(repo, "fsck", "--no-progress", "--strict")
