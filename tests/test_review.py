"""The review gate, through the real CLI: `ralph run --land review` leaves the target alone,
`ralph review` lists the waiting commits, `ralph approve` lands them exactly once (merged and
verified again when the target moved; a conflict or a failed verify sends the task back), and
`ralph reject --note` sends a task back with the note in its next prompt. Real git, real
processes, both store backends where the store decides.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from gitutil import check_history, git, init_repo

from ralph.store import open_store
from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]
EDIT = f"{sys.executable} {AGENTS / 'edit.py'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ralph.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
    env.update(
        HOME=str(tmp_path / "home"),
        RALPH_SANDBOX="off",
        RALPH_DB=str(tmp_path / "ralph.db"),
        RECORD_PROMPTS=str(tmp_path / "prompts.txt"),
    )
    return env


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", {"README.md": "hello\n"})


def ralph(
    root: Path, env: dict[str, str], *args: str, ok: bool = True
) -> subprocess.CompletedProcess:
    done = run_ralph(*args, cwd=root, env=env, timeout=300)
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def statuses(env: dict[str, str]) -> dict[str, str]:
    with open_store(env["RALPH_DB"]) as store:
        return {t.id: t.status for t in store.list(limit=None)}


def in_review(root: Path, env: dict[str, str], *specs: dict, run: tuple[str, ...] = ()) -> str:
    """Add the tasks, run them in review mode; returns the target's head before the run."""
    with open_store(env["RALPH_DB"]) as store:
        store.add_many(list(specs))
    base = git(root, "rev-parse", "main")
    ralph(root, env, "run", "--land", "review", "--agent-cmd", EDIT, "--no-live", *run)
    return base


def trailer(root: Path, rev: str, key: str) -> str:
    return git(root, "log", "-1", f"--format=%(trailers:key={key},valueonly)", rev)


TASKS = (
    {"id": "A", "title": "first"},
    {"id": "B", "title": "second"},
    {"id": "C", "title": "third"},
    {"id": "D", "title": "after A", "blocked_by": ["A"]},
)


def test_review_mode_leaves_the_target_alone_and_review_lists_every_task(
    repo: Path, env: dict[str, str], db: str
) -> None:
    env["RALPH_DB"] = db
    base = in_review(repo, env, *TASKS)
    assert git(repo, "rev-parse", "main") == base
    assert git(repo, "status", "--porcelain") == ""  # nothing of the tasks in the checkout
    assert statuses(env) == {"A": "review", "B": "review", "C": "review", "D": "open"}
    queue = json.loads(ralph(repo, env, "review", "--json").stdout)
    assert [q["task_id"] for q in queue] == ["A", "B", "C"]
    for item in queue:
        task = item["task_id"]
        assert item["branch"] == f"refs/heads/ralph/review/{task}"
        assert git(repo, "rev-parse", item["branch"]) == item["commit_sha"]
        assert git(repo, "rev-parse", f"{item['commit_sha']}^") == base
        assert trailer(repo, item["commit_sha"], "Task") == task
        assert "2 files changed" in item["diffstat"]  # its file and the progress log
        assert item["verify"] == {"result": "none"}
    text = ralph(repo, env, "review").stdout
    assert "3 task(s) waiting for review" in text and "ralph/review/B" in text
    assert json.loads(ralph(repo, env, "ready", "--json").stdout) == []  # D waits for A


def test_approve_lands_one_commit_with_its_trailers_and_unblocks_dependents(
    repo: Path, env: dict[str, str], db: str
) -> None:
    env["RALPH_DB"] = db
    base = in_review(repo, env, *TASKS)
    reviewed = git(repo, "rev-parse", "ralph/review/A")
    out = ralph(repo, env, "approve", "A", "--by", "alice").stdout
    assert "A: landed as" in out and "Now unblocked: D" in out
    assert git(repo, "rev-parse", "main") == reviewed  # the target had not moved: that commit
    assert git(repo, "rev-list", "--count", f"{base}..main") == "1"
    assert trailer(repo, "main", "Task") == "A"
    assert trailer(repo, "main", "Ralph-Token")
    assert (repo / "work" / "A.txt").read_text() == "A was here\n"  # the checkout moved along
    assert git(repo, "rev-parse", "refs/ralph/tasks/A") == reviewed
    assert subprocess.run(["git", "rev-parse", "-q", "--verify", "ralph/review/A"], cwd=repo,
                          capture_output=True).returncode == 1  # fmt: skip
    assert statuses(env) == {"A": "done", "B": "review", "C": "review", "D": "open"}
    assert [t["id"] for t in json.loads(ralph(repo, env, "ready", "--json").stdout)] == ["D"]
    with open_store(db) as store:
        [approved] = store.events(task_id="A", kind="approved")
        assert approved.data["by"] == "alice" and approved.data["commit"] == reviewed
        assert store.get("A").commit_sha == reviewed
    check_history(repo, base, ["A"])
    again = ralph(repo, env, "approve", "A", ok=False)
    assert again.returncode == 6 and "not waiting for review" in again.stderr


def test_reject_sends_the_task_back_with_the_note_in_its_next_prompt(
    repo: Path, env: dict[str, str], db: str
) -> None:
    env["RALPH_DB"] = db
    base = in_review(repo, env, *TASKS)
    first = git(repo, "rev-parse", "ralph/review/B")
    note = "Use tabs, not spaces; keep the old name."
    out = ralph(repo, env, "reject", "B", "--note", note, "--by", "bob").stdout
    assert "B: rejected" in out
    kept = out.split("commit kept as ")[1].split()[0]
    assert kept.startswith("refs/ralph/attempts/B/") and git(repo, "rev-parse", kept) == first
    assert statuses(env)["B"] == "open"
    prompts = Path(env["RECORD_PROMPTS"])
    prompts.unlink()
    ralph(repo, env, "run", "--land", "review", "--agent-cmd", EDIT, "--no-live")
    [prompt] = [p for p in prompts.read_text().split("\n=====\n") if p.strip()]
    assert "# Task B: second" in prompt and note in prompt
    assert statuses(env)["B"] == "review"  # it re-entered review
    assert git(repo, "rev-parse", "main") == base
    with open_store(db) as store:
        [rejected] = store.events(task_id="B", kind="rejected")
        assert rejected.data == {"by": "bob", "note": note, "kept": kept}
        assert [r["state"] for r in store.reviews_of("B")] == ["rejected", "pending"]
    missing = ralph(repo, env, "reject", "C", "--note", " ", ok=False)
    assert missing.returncode == 2 and "needs a note" in missing.stderr


# -- the target moved before the approval (SQLite: the store decides nothing new here) -----

CHECK = """import os, sys
from pathlib import Path
with open(sys.argv[1], "a") as log:
    log.write(os.getcwd() + "\\n")
sys.exit(1 if Path("broken.txt").exists() else 0)
"""


def with_verify(repo: Path, tmp_path: Path) -> Path:
    """A committed ralph.toml whose verify command logs where it ran and fails on broken.txt."""
    script, log = tmp_path / "check.py", tmp_path / "verify.log"
    script.write_text(CHECK)
    (repo / "ralph.toml").write_text(f'verify = "{sys.executable} {script} {log}"\n')
    git(repo, "add", "ralph.toml")
    git(repo, "commit", "-q", "-m", "config")
    return log


def user_commit(repo: Path, name: str, text: str) -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"user: {name}")
    return git(repo, "rev-parse", "main")


def test_approve_after_the_target_moved_verifies_the_merge_again_and_lands(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    log = with_verify(repo, tmp_path)
    base = in_review(repo, env, {"id": "A", "title": "first"})
    assert len(log.read_text().splitlines()) == 1
    theirs = user_commit(repo, "other.txt", "the user's\n")
    ralph(repo, env, "approve", "A")
    runs = log.read_text().splitlines()
    assert len(runs) == 2 and "/.ralph/tmp/approve-A-" in runs[1]  # on the merged result
    assert git(repo, "rev-parse", "main^") == theirs
    assert trailer(repo, "main", "Task") == "A"
    assert statuses(env)["A"] == "done"
    check_history(repo, base, ["A"], kept=[theirs])
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1  # scratch gone


def test_approve_after_the_target_moved_sends_it_back_when_verify_fails_there(
    repo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    with_verify(repo, tmp_path)
    in_review(repo, env, {"id": "A", "title": "first"})
    reviewed = git(repo, "rev-parse", "ralph/review/A")
    theirs = user_commit(repo, "broken.txt", "breaks the suite\n")
    out = ralph(repo, env, "approve", "A").stdout
    assert "A: sent back" in out and "failed on the target's newer head" in out
    assert git(repo, "rev-parse", "main") == theirs
    with open_store(env["RALPH_DB"]) as store:
        task = store.get("A")
        assert task.status == "open" and "verify command" in (task.review_notes or "")
        [back] = store.events(task_id="A", kind="review_sent_back")
    assert git(repo, "rev-parse", back.data["kept"]) == reviewed


def test_approve_on_a_conflict_sends_the_task_back_with_a_note(
    repo: Path, env: dict[str, str]
) -> None:
    in_review(repo, env, {"id": "A", "title": "first"})
    theirs = user_commit(repo, "work/A.txt", "the user wrote this first\n")
    out = ralph(repo, env, "approve", "A").stdout
    assert "A: sent back" in out and "Merge conflict landing on main: work/A.txt" in out
    assert git(repo, "rev-parse", "main") == theirs
    assert statuses(env)["A"] == "open"


# -- killed inside approve, right after the ref transaction ---------------------------------

KILL_APPROVE_HOOK = r"""#!/bin/sh
[ "$1" = committed ] || exit 0
hit=no
while read -r old new ref; do
    case "$ref" in refs/ralph/tasks/*) hit=yes ;; esac
done
[ "$hit" = yes ] && [ -e "$KILL_ONCE" ] || exit 0
rm -f "$KILL_ONCE"
p=$PPID
while [ "$p" -gt 1 ] && ! ps -o args= -p "$p" | grep -qE -- "-m ralph approve"; do
    p=$(ps -o ppid= -p "$p" | tr -d ' ')
done
echo "$p" > "$KILLED"
[ "$p" -gt 1 ] && kill -9 "$p"
exit 0
"""


@pytest.mark.parametrize("then", ["approve", "run", "run-checkout"])
def test_sigkill_after_the_landing_inside_approve_lands_once_and_is_reconciled(
    repo: Path, env: dict[str, str], db: str, tmp_path: Path, then: str
) -> None:
    env["RALPH_DB"] = db
    base = in_review(repo, env, *TASKS)
    reviewed = git(repo, "rev-parse", "ralph/review/A")
    hook = repo / ".git" / "hooks" / "reference-transaction"
    hook.write_text(KILL_APPROVE_HOOK)
    hook.chmod(0o755)
    killed = tmp_path / "killed"
    (tmp_path / "kill-once").touch()
    env.update(KILL_ONCE=str(tmp_path / "kill-once"), KILLED=str(killed))
    dead = ralph(repo, env, "approve", "A", ok=False)
    assert dead.returncode == -9 and killed.exists(), dead.stderr
    assert git(repo, "rev-parse", "main") == reviewed  # landed in git ...
    assert statuses(env)["A"] == "review"  # ... and not yet in the store
    if then == "approve":
        assert "had already landed" in ralph(repo, env, "approve", "A").stdout
    else:  # the next run's start reconciles it (its workers then take D)
        workers = ["--workers", "2"] if then == "run" else []
        ralph(repo, env, "run", "--land", "review", "--agent-cmd", EDIT, *workers)
    # D was unblocked; the run's workers (in worktrees) sent it to review too
    assert statuses(env) == {"A": "done", "B": "review", "C": "review",
                             "D": "open" if then == "approve" else "review"}  # fmt: skip
    assert git(repo, "rev-list", "--count", f"{base}..main") == "1"
    check_history(repo, base, ["A"])
    assert git(repo, "status", "--porcelain") == ""  # the half-moved checkout was finished
    with open_store(db) as store:
        assert store.get("A").commit_sha == reviewed
        assert [r["state"] for r in store.reviews_of("A")] == ["landed"]
        assert [e.task_id for e in store.events(kind="done")] == ["A"]  # done once


def test_land_mode_is_checked_before_anything_runs(repo: Path, env: dict[str, str]) -> None:
    bad = ralph(repo, env, "run", "--land", "sideways", "--agent-cmd", EDIT, ok=False)
    assert bad.returncode == 8 and "land.mode must be one of" in bad.stderr
    remote = ralph(repo, env, "run", "--land", "review", "--remote", "origin", "--agent-cmd", EDIT,
                   ok=False)  # fmt: skip
    assert remote.returncode == 2 and "review mode" in remote.stderr


def test_web_approve_needs_the_login_and_the_session_csrf_token(
    repo: Path, env: dict[str, str]
) -> None:
    from urllib.parse import urlencode

    from webutil import login, request, serve

    base_sha = in_review(repo, env, {"id": "A", "title": "first"})
    with serve(repo, env) as (proc, base):
        assert request(base, "POST", "/review/A/approve", body="")[0] == 401
        cookie, csrf = login(proc, base)
        wrong = urlencode({"csrf": "nope"})
        assert request(base, "POST", "/review/A/approve", body=wrong, headers=cookie)[0] == 403
        assert statuses(env)["A"] == "review" and git(repo, "rev-parse", "main") == base_sha
        status, headers, _ = request(
            base, "POST", "/review/A/approve", body=urlencode({"csrf": csrf}), headers=cookie
        )
        assert status == 303 and headers["location"] == "/tasks/A"
    assert statuses(env)["A"] == "done"
    check_history(repo, base_sha, ["A"])


@pytest.mark.parametrize("agent", ["commits_itself.py", "switch_branch.py"])
def test_review_mode_takes_an_agent_that_commits_or_switches_branch_as_one_commit(
    repo: Path, env: dict[str, str], agent: str
) -> None:
    with open_store(env["RALPH_DB"]) as store:
        store.add("zoo", id="Z")
    base = git(repo, "rev-parse", "main")
    cmd = f"{sys.executable} {AGENTS / agent}"
    ralph(repo, env, "run", "--land", "review", "--agent-cmd", cmd, "--no-live")
    assert statuses(env) == {"Z": "review"}
    assert git(repo, "rev-parse", "main") == base
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "status", "--porcelain") == ""
    reviewed = git(repo, "rev-parse", "ralph/review/Z")
    assert git(repo, "rev-parse", f"{reviewed}^") == base  # one commit, on the target's tip
    assert "out/Z.txt" in git(repo, "show", "--name-only", "--format=", reviewed)
    ralph(repo, env, "approve", "Z")
    check_history(repo, base, ["Z"])
