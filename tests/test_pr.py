"""Pull request mode (`[land] mode = "pr"`), through the real CLI, the real `gh` and a bare git
repository as the remote: one pull request per task with the target untouched, a merge on
GitHub lands the task with the merge commit, a close sends it back with the review in its
next prompt, and a run killed around `gh pr create` never opens a second pull request.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from gitutil import git, init_repo
from support.fake_github import FakeGitHub, needs_gh

from ralph.store import open_store
from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]
EDIT = f"{sys.executable} {AGENTS / 'edit.py'}"
CONFIG = 'remote = "origin"\n\n[land]\nmode = "pr"\nrepo = "acme/app"\n'
pytestmark = needs_gh


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    return bare


@pytest.fixture
def repo(tmp_path: Path, remote: Path) -> Path:
    root = init_repo(tmp_path / "repo", {"README.md": "hello\n", "ralph.toml": CONFIG})
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "-q", "origin", "main")
    return root


@pytest.fixture
def env(tmp_path: Path, github: FakeGitHub) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("RALPH_", "GH_", "GITHUB_"))}
    home = tmp_path / "home"
    home.mkdir()
    return {
        **keep,
        **github.env(home),
        "HOME": str(home),
        "RALPH_SANDBOX": "off",
        "RALPH_DB": str(tmp_path / "ralph.db"),
        "RECORD_PROMPTS": str(tmp_path / "prompts.txt"),
    }


def ralph(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_ralph(*args, cwd=root, env=env, timeout=300)


def run(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = ralph(root, env, "run", "--agent-cmd", EDIT, "--no-live", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def add(env: dict[str, str], *specs: dict) -> None:
    with open_store(env["RALPH_DB"]) as store:
        store.add_many(list(specs))


def tasks(env: dict[str, str]) -> dict[str, dict]:
    with open_store(env["RALPH_DB"]) as store:
        return {
            t.id: {**t.to_dict(), "review_notes": t.review_notes} for t in store.list(limit=None)
        }


def reviews(env: dict[str, str], task_id: str) -> list[dict]:
    with open_store(env["RALPH_DB"]) as store:
        return store.reviews_of(task_id)


def merge_on_remote(remote: Path, github: FakeGitHub, number: int) -> str:
    """What GitHub's merge button does: a merge commit of the head onto the target, pushed."""
    pr = github.pulls[number]
    head = git(remote, "rev-parse", f"refs/heads/{pr.head}")
    base = git(remote, "rev-parse", f"refs/heads/{pr.base}")
    tree = git(remote, "rev-parse", f"{head}^{{tree}}")  # the head is on the base's tip here
    sha = git(remote, "commit-tree", tree, "-p", base, "-p", head, "-m", f"Merge #{number}")
    git(remote, "update-ref", f"refs/heads/{pr.base}", sha, base)
    github.merge(number, sha)
    return sha


TASKS = (
    {"id": "A", "title": "first", "description": "Do the first thing."},
    {"id": "B", "title": "second"},
    {"id": "C", "title": "after A", "blocked_by": ["A"]},
)


def test_pr_mode_opens_one_pull_request_per_task_and_leaves_the_target_alone(
    repo: Path, remote: Path, env: dict[str, str], github: FakeGitHub
) -> None:
    add(env, *TASKS)
    before = git(remote, "rev-parse", "main")
    run(repo, env)
    assert git(remote, "rev-parse", "main") == before
    assert git(repo, "rev-parse", "main") == before
    got = tasks(env)
    assert {k: v["status"] for k, v in got.items()} == {"A": "review", "B": "review", "C": "open"}
    for task_id, title in (("A", "first"), ("B", "second")):
        [pr] = github.pull_for(f"ralph/review/{task_id}")
        [review] = reviews(env, task_id)
        assert (pr.title, pr.base, pr.state) == (title, "main", "OPEN")
        assert review["pr_number"] == pr.number and review["pr_url"].endswith(f"/{pr.number}")
        assert (
            git(remote, "rev-parse", f"refs/heads/ralph/review/{task_id}") == (review["commit_sha"])
        )
        assert f"Task: {task_id}" in pr.body and "Ralph-Token:" in pr.body and "Cost:" in pr.body
    assert github.pull_for("ralph/review/A")[0].body.startswith("Do the first thing.")
    listed = ralph(repo, env, "review").stdout
    assert "pull request #" in listed


def test_merged_pull_request_lands_the_task_and_a_closed_one_comes_back_with_its_review(
    repo: Path, remote: Path, env: dict[str, str], github: FakeGitHub
) -> None:
    add(env, *TASKS)
    run(repo, env)
    [a], [b] = github.pull_for("ralph/review/A"), github.pull_for("ralph/review/B")
    merged = merge_on_remote(remote, github, a.number)
    github.close_pr(b.number, review="Use tabs, not spaces.", comment="And name it second.txt")

    synced = ralph(repo, env, "review", "--sync", "--json")
    assert synced.returncode == 0, synced.stderr
    report = json.loads(synced.stdout)
    assert [(x["task"], x["commit"], x["unblocked"]) for x in report["landed"]] == [
        ("A", merged, ["C"])
    ]
    assert [x["task"] for x in report["returned"]] == ["B"]
    got = tasks(env)
    assert (got["A"]["status"], got["A"]["commit"]) == ("done", merged)
    assert git(repo, "cat-file", "-t", merged) == "commit"  # fetched: the sha exists here
    assert got["B"]["status"] == "open" and got["C"]["status"] == "open"
    assert "Use tabs, not spaces." in got["B"]["review_notes"]
    assert "And name it second.txt" in got["B"]["review_notes"]
    assert [r["state"] for r in reviews(env, "B")] == ["rejected"]
    again = ralph(repo, env, "review", "--sync", "--json")  # nothing twice
    assert json.loads(again.stdout)["landed"] == [] and again.returncode == 0

    Path(env["RECORD_PROMPTS"]).write_text("")
    run(repo, env)
    prompts = Path(env["RECORD_PROMPTS"]).read_text()
    assert "Use tabs, not spaces." in prompts
    got = tasks(env)
    assert got["B"]["status"] == "review" and got["C"]["status"] == "review"
    opened = [p.state for p in github.pull_for("ralph/review/B")]
    assert sorted(opened) == ["CLOSED", "OPEN"]  # a new pull request for the new attempt
    assert git(remote, "rev-parse", "main") == merged  # still only GitHub moves the target


def test_a_run_carries_out_merges_at_its_start_so_dependents_run_in_it(
    repo: Path, remote: Path, env: dict[str, str], github: FakeGitHub
) -> None:
    add(env, TASKS[0], TASKS[2])
    run(repo, env)
    [a] = github.pull_for("ralph/review/A")
    merged = merge_on_remote(remote, github, a.number)
    done = run(repo, env)
    assert "merged as" in done.stdout + done.stderr
    got = tasks(env)
    assert (got["A"]["status"], got["A"]["commit"]) == ("done", merged)
    assert got["C"]["status"] == "review"
    [c] = reviews(env, "C")
    assert git(repo, "rev-parse", f"{c['commit_sha']}^") == merged  # cut from the merge


def crashing_gh(tmp_path: Path, when: str, command: str = "create") -> str:
    """A `gh` first on PATH that SIGKILLs the ralph that runs `gh pr create`, before the real
    gh creates the pull request or right after (or, `when` "fail", fails as GitHub down
    would); returns the PATH to use."""
    folder = tmp_path / f"crashing-{command}-{when}"
    folder.mkdir()
    real = shutil.which("gh")
    script = folder / "gh"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, subprocess, sys\n"
        f"real = {real!r}\n"
        f"if sys.argv[1:3] == ['pr', {command!r}]:\n"
        f"    if {when!r} == 'fail':\n"
        "        sys.exit('HTTP 502: Bad Gateway')\n"
        f"    if {when!r} == 'after':\n"
        "        subprocess.run([real, *sys.argv[1:]], stdout=subprocess.DEVNULL)\n"
        "    os.kill(os.getppid(), signal.SIGKILL)\n"
        "    sys.exit(1)\n"
        "os.execv(real, [real, *sys.argv[1:]])\n"
    )
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_run_killed_around_pr_create_ends_with_exactly_one_pull_request(
    repo: Path, remote: Path, env: dict[str, str], github: FakeGitHub, tmp_path: Path, when: str
) -> None:
    add(env, TASKS[0])
    killed = ralph(repo, {**env, "PATH": crashing_gh(tmp_path, when)}, "run", "--agent-cmd",
                   EDIT, "--no-live")  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    [review] = reviews(env, "A")
    assert review["state"] == "pending" and review["pr_number"] is None
    assert git(remote, "rev-parse", "refs/heads/ralph/review/A") == review["commit_sha"]
    assert len(github.pull_for("ralph/review/A")) == (1 if when == "after" else 0)

    run(repo, env)  # the start's sync finishes what the killed run left
    [pr] = github.pull_for("ralph/review/A")
    [review] = reviews(env, "A")
    assert review["pr_number"] == pr.number and tasks(env)["A"]["status"] == "review"
    ralph(repo, env, "review", "--sync")
    assert len(github.pull_for("ralph/review/A")) == 1


def test_a_sync_killed_after_seeing_the_merge_lands_the_task_at_the_next_sync(
    repo: Path, remote: Path, env: dict[str, str], github: FakeGitHub, tmp_path: Path
) -> None:
    add(env, TASKS[0], TASKS[2])
    run(repo, env)
    [a] = github.pull_for("ralph/review/A")
    merged = merge_on_remote(remote, github, a.number)
    path = crashing_gh(tmp_path, "after", command="view")  # gh answered; ralph dies reading it
    killed = ralph(repo, {**env, "PATH": path}, "review", "--sync")
    assert killed.returncode == -signal.SIGKILL
    assert tasks(env)["A"]["status"] == "review"
    synced = ralph(repo, env, "review", "--sync")
    assert synced.returncode == 0, synced.stderr
    assert "Now unblocked: C" in synced.stdout
    got = tasks(env)
    assert (got["A"]["status"], got["A"]["commit"], got["C"]["status"]) == ("done", merged, "open")


def test_approve_and_reject_point_to_the_pull_request(
    repo: Path, env: dict[str, str], github: FakeGitHub
) -> None:
    add(env, TASKS[0])
    run(repo, env)
    [pr] = github.pull_for("ralph/review/A")
    for args in (("approve", "A"), ("reject", "A", "--note", "no")):
        refused = ralph(repo, env, *args)
        assert refused.returncode == 2, refused.stderr
        assert f"pull request #{pr.number}" in refused.stderr and "on GitHub" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert tasks(env)["A"]["status"] == "review"


def test_a_failed_sync_is_one_line_and_exit_16(
    repo: Path, env: dict[str, str], github: FakeGitHub
) -> None:
    add(env, TASKS[0])
    run(repo, env)
    github.pulls.clear()  # GitHub no longer knows the pull request
    failed = ralph(repo, env, "review", "--sync")
    assert failed.returncode == 16, failed.stdout + failed.stderr
    assert "A:" in failed.stderr and "Traceback" not in failed.stderr
    assert tasks(env)["A"]["status"] == "review"


def test_pr_mode_needs_a_remote(repo: Path, env: dict[str, str]) -> None:
    (repo / "ralph.toml").write_text('[land]\nmode = "pr"\nrepo = "acme/app"\n')
    git(repo, "commit", "-qam", "no remote")
    add(env, TASKS[0])
    refused = ralph(repo, env, "run", "--agent-cmd", EDIT, "--no-live")
    assert refused.returncode == 2 and "remote" in refused.stderr
    both = ralph(repo, env, "run", "--land", "pr", "--remote", "origin", "--push-branches",
                 "--agent-cmd", EDIT)  # fmt: skip
    assert both.returncode == 2 and "choose one" in both.stderr
    git(repo, "remote", "set-url", "origin", str(repo.parent / "remote.git"))
    (repo / "ralph.toml").write_text('remote = "origin"\n[land]\nmode = "pr"\n')
    unnamed = ralph(repo, env, "run", "--agent-cmd", EDIT, "--no-live")  # a path names no repo
    assert unnamed.returncode == 2 and 'repo = "OWNER/NAME"' in unnamed.stderr
    assert tasks(env)["A"]["status"] == "open"


def test_github_failing_during_the_run_leaves_the_task_in_review_for_the_next_sync(
    repo: Path, env: dict[str, str], github: FakeGitHub, tmp_path: Path
) -> None:
    add(env, TASKS[0], TASKS[1])
    done = run(repo, {**env, "PATH": crashing_gh(tmp_path, "fail")})
    said = done.stdout + done.stderr
    assert "A: no pull request yet" in said and "HTTP 502" in said
    assert "A: pull request not synced yet" in said  # the run's last sync tried again
    assert {t["status"] for t in tasks(env).values()} == {"review"}
    assert github.pulls == {}
    synced = ralph(repo, env, "review", "--sync")
    assert synced.returncode == 0, synced.stderr
    assert "A: pull request #" in synced.stdout and "B: pull request #" in synced.stdout
    assert len(github.pull_for("ralph/review/A")) == len(github.pull_for("ralph/review/B")) == 1


def test_land_table_takes_mode_poll_and_repo_and_refuses_unknown_keys() -> None:
    from ralph.errors import ConfigError
    from ralph.review import parse_land

    land = parse_land({"mode": "pr", "poll": 90, "repo": "acme/app"}, "ralph.toml")
    assert (land.mode, land.poll, land.repo, land.pr, land.review) == (
        "pr", 90.0, "acme/app", True, True
    )  # fmt: skip
    assert parse_land({"poll": "2m"}, "x").poll == 120.0
    for bad, said in (
        ({"pol": 1}, "unknown key land.pol"),
        ({"poll": "soon"}, "invalid land.poll"),
        ({"repo": "app"}, "land.repo must be"),
    ):
        with pytest.raises(ConfigError, match=said):
            parse_land(bad, "ralph.toml")


def test_the_github_repository_is_read_from_the_remote_url() -> None:
    from ralph.github import Repo, repo_of_url

    assert repo_of_url("git@github.com:acme/app.git") == Repo("acme", "app")
    assert repo_of_url("https://github.com/acme/app") == Repo("acme", "app")
    ghe = Repo("acme", "app", "ghe.corp")
    assert repo_of_url("ssh://git@ghe.corp:2222/acme/app.git") == ghe  # the ssh port dropped
    assert repo_of_url("https://ghe.corp:8443/acme/app.git") == Repo("acme", "app", "ghe.corp:8443")
    assert repo_of_url("/srv/git/app.git") is None


def test_a_closed_pull_requests_note_carries_its_reviews_and_comments() -> None:
    from ralph.review.pulls import closed_note

    seen = {
        "reviews": [{"author": {"login": "ann"}, "state": "CHANGES_REQUESTED", "body": "Tabs."},
                    {"author": {"login": "bob"}, "state": "APPROVED", "body": ""}],
        "comments": [{"author": {"login": "cy"}, "body": "Rename it."}],
    }  # fmt: skip
    assert closed_note(4, seen) == (
        "Pull request #4 was closed without merging.\n"
        "Review by ann (CHANGES_REQUESTED): Tabs.\nComment by cy: Rename it."
    )
    assert "no review comments" in closed_note(4, {})


class FlakyPulls:
    """A PullRequests whose sync of task A fails until told otherwise (the back-off's input)."""

    def __init__(self) -> None:
        self.failing, self.lines = True, []

    def log(self, line: str) -> None:
        self.lines.append(line)

    def sync(self, due: Any) -> Any:
        from ralph.review.pulls import SyncReport

        report = SyncReport()
        if due("A"):
            report.tried.append("A")
            if self.failing:
                report.failed.append({"task": "A", "error": "HTTP 502"})
        return report


def test_a_task_whose_sync_fails_waits_longer_each_time_and_is_logged_once() -> None:
    from ralph.review.pulls import PullRequestSync

    pulls = FlakyPulls()
    sync = PullRequestSync(pulls, every=60.0)  # type: ignore[arg-type]
    sync.sync_once()
    first = sync.next_at["A"] - time.monotonic()
    assert sync.failures == {"A": 1} and 60 < first <= 120
    assert sync.sync_once().tried == []  # not due yet: not asked again
    sync.next_at["A"] = 0.0  # its wait is over
    sync.sync_once()
    assert sync.failures == {"A": 2} and sync.next_at["A"] - time.monotonic() > 180
    assert pulls.lines == ["A: pull request not synced yet: HTTP 502"]  # the same error once
    pulls.failing, sync.next_at["A"] = False, 0.0
    sync.sync_once()
    assert sync.failures == {} and sync.next_at == {}
