"""GitHub issues as a task source, with the real `gh` CLI against a scripted GitHub on loopback
(tests/support/fake_github.py): the import's mapping and idempotence, and the comment (and
close) on the issue when its task lands."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from gitutil import git, init_repo
from support.fake_github import FakeGitHub, needs_gh

from ralph.store import open_store
from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]
pytestmark = needs_gh


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", {"README.md": "hello\n"})


@pytest.fixture
def env(tmp_path: Path, github: FakeGitHub) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("RALPH_", "GH_", "GITHUB_"))}
    home = tmp_path / "home"
    home.mkdir()
    return {**keep, **github.env(home), "HOME": str(home), "RALPH_SANDBOX": "off"}


def ralph(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_ralph(*args, cwd=repo, env=env, timeout=300)


def tasks(repo: Path) -> dict[str, dict]:
    with open_store(repo / ".ralph" / "ralph.db") as store:
        return {t.id: {**t.to_dict(), "blocked_by": sorted(t.blocked_by)} for t in store.list()}


def test_import_maps_issues_to_tasks_with_labels_capabilities_and_dependencies(
    repo: Path, env: dict[str, str], github: FakeGitHub
):
    db = github.file_issue("Set up the database", "Schema first.", ["ralph"])
    api = github.file_issue("Write the API", "Blocked by #1", ["ralph", "backend"])
    epic = github.file_issue("Ship v1", "Tracking:\n- [ ] #1\n- [ ] #2\n", ["ralph"])
    gpu = github.file_issue("Train it", "Depends on #2", ["ralph", "needs:gpu"])
    github.file_issue("Not for the agents", "", ["design"])

    preview = ralph(repo, env, "import", f"github:{github.owner}/{github.name}", "--label", "ralph")
    assert preview.returncode == 0, preview.stderr
    assert "4 new, 0 updated" in preview.stdout and "Nothing written" in preview.stdout
    assert not (repo / ".ralph" / "ralph.db").exists() or tasks(repo) == {}

    done = ralph(repo, env, "import", "github:acme/app", "--label", "ralph", "--apply")
    assert done.returncode == 0, done.stderr
    assert "4 new, 0 updated, 0 unchanged, 4 dependencies" in done.stdout
    got = tasks(repo)
    assert set(got) == {f"gh-{n}" for n in (db, api, epic, gpu)}
    assert got[f"gh-{api}"]["blocked_by"] == [f"gh-{db}"]
    assert got[f"gh-{epic}"]["blocked_by"] == [f"gh-{db}", f"gh-{api}"]
    assert got[f"gh-{gpu}"]["blocked_by"] == [f"gh-{api}"]
    assert got[f"gh-{gpu}"]["requires"] == ["gpu"]
    assert got[f"gh-{api}"]["labels"] == ["backend"]  # the filter label is not repeated
    assert got[f"gh-{api}"]["description"] == "Blocked by #1"
    assert got[f"gh-{db}"]["metadata"]["github"]["number"] == db


def test_importing_again_updates_open_tasks_and_never_duplicates(
    repo: Path, env: dict[str, str], github: FakeGitHub
):
    first = github.file_issue("Fix login", "It breaks.", ["ralph"])
    assert ralph(repo, env, "import", "github:acme/app", "--apply").returncode == 0
    again = ralph(repo, env, "import", "github:acme/app", "--apply", "--json")
    assert again.returncode == 0, again.stderr
    plan = json.loads(again.stdout)
    assert (plan["new"], plan["updated"], plan["existing"]) == ([], [], [f"gh-{first}"])

    github.issues[first].title = "Fix login on Safari"
    second = github.file_issue("Log out", f"After #{first}", ["ralph"])
    third = ralph(repo, env, "import", "github:acme/app", "--apply")
    assert third.returncode == 0, third.stderr
    assert "1 new, 1 updated, 0 unchanged, 1 dependencies" in third.stdout
    got = tasks(repo)
    assert len(got) == 2
    assert got[f"gh-{first}"]["title"] == "Fix login on Safari"
    assert got[f"gh-{second}"]["blocked_by"] == [f"gh-{first}"]


def test_a_landed_task_gets_one_comment_with_its_commit_and_its_issue_closed(
    repo: Path, env: dict[str, str], github: FakeGitHub
):
    number = github.file_issue("Add a greeting", "Write hello.txt", ["ralph"])
    (repo / "ralph.toml").write_text("[github]\nclose_issues = true\n")
    git(repo, "add", "ralph.toml")
    git(repo, "commit", "-q", "-m", "config")
    assert ralph(repo, env, "import", "github:acme/app", "--apply").returncode == 0
    agent = shlex.join([sys.executable, str(AGENTS / "edit.py")])
    run = ralph(repo, env, "run", "--agent-cmd", agent, "--no-live")
    assert run.returncode == 0, run.stderr
    task = tasks(repo)[f"gh-{number}"]
    assert task["status"] == "done"
    issue = github.issues[number]
    assert len(issue.comments) == 1 and task["commit"] in issue.comments[0], run.stdout
    assert issue.state == "CLOSED"
    # A second run (nothing to do) and its sync comment nothing twice.
    assert ralph(repo, env, "run", "--agent-cmd", agent, "--no-live").returncode == 0
    assert len(github.issues[number].comments) == 1


def test_a_comment_already_on_the_issue_is_not_written_twice_after_a_lost_record(
    repo: Path, env: dict[str, str], github: FakeGitHub
):
    """A crash after the comment and before its event: the next sync finds the marker."""
    number = github.file_issue("Add a greeting", "Write hello.txt", ["ralph"])
    assert ralph(repo, env, "import", "github:acme/app", "--apply").returncode == 0
    agent = shlex.join([sys.executable, str(AGENTS / "edit.py")])
    assert ralph(repo, env, "run", "--agent-cmd", agent, "--no-live").returncode == 0
    assert len(github.issues[number].comments) == 1
    db = repo / ".ralph" / "ralph.db"
    conn = sqlite3.connect(db)  # as if the record were lost
    conn.execute("DELETE FROM events WHERE kind = 'github_commented'")
    conn.commit()
    conn.close()
    again = ralph(repo, env, "run", "--agent-cmd", agent, "--no-live")
    assert again.returncode == 0, again.stderr
    assert "could not comment" not in again.stdout + again.stderr
    assert len(github.issues[number].comments) == 1
    with open_store(db) as store:
        assert [e.task_id for e in store.events(kind="github_commented")] == [f"gh-{number}"]


def test_import_without_gh_is_one_line_with_exit_16_and_writes_nothing(
    repo: Path, env: dict[str, str], tmp_path: Path
):
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    result = ralph(repo, {**env, "PATH": str(bare)}, "import", "github:acme/app", "--apply")
    assert result.returncode == 16
    (line,) = result.stderr.strip().splitlines()
    assert "`gh` is not installed" in line and "gh auth login" in line
    assert not (repo / ".ralph" / "ralph.db").exists() or tasks(repo) == {}


def test_a_malformed_github_source_is_one_line_with_exit_2(repo: Path, env: dict[str, str]):
    result = ralph(repo, env, "import", "github:not-a-repo", "--apply")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "github:OWNER/REPO" in line
