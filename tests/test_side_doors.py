"""Git's side doors (DESIGN.md): an agent that hides or undoes work through `info/exclude`,
`git stash` or `git reset`, a user who commits while ralph runs, and a second run in the same
checkout. Each through the real `ralph run` CLI, in the checkout and with `--workers 2`, with the
agent `tests/agents/side_door.py`; after each run `check_history` checks the whole history.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitutil import check_history, git, init_repo
from test_zoo import AGENTS, KINDS, RALPH, Zoo

from ralph import reaper

pytestmark = pytest.mark.skipif(not reaper.available(), reason="the zoo checks processes in /proc")

HANG_GUARD = 120  # seconds; only stops a broken run from hanging the suite
AGENT = shlex.join([sys.executable, str(AGENTS / "side_door.py")])


class Door(Zoo):
    """A Zoo whose repository has two commits and a user's untracked file, and a flags folder
    the agent and the test meet in."""

    flags: Path
    user_files: dict[str, bytes]

    def commits(self) -> list[tuple[str, str]]:
        """The task commits on main (a user's own commit has no Task trailer)."""
        return [(sha, task) for sha, task in super().commits() if task.strip()]

    def attempts(self) -> dict[str, int]:
        listed = json.loads(self.ralph("list", "--json").stdout)
        return {t["id"]: t["attempts"] for t in listed}

    def check(self, *, kept: tuple[str, ...] = ()) -> None:
        listed = json.loads(self.ralph("list", "--json").stdout)
        done = [t["id"] for t in listed if t["status"] == "done"]
        check_history(
            self.root,
            self.base,
            done,
            kept=kept,
            user_files=self.user_files,
            attempts=self.attempts(),
            max_attempts=3,
        )

    def start(self, *flags: str, **env: str) -> subprocess.Popen[str]:
        """`ralph run` in the background (the test acts while its agent waits)."""
        return subprocess.Popen(
            [*RALPH, "run", "--agent-cmd", AGENT, "--config", str(self.config), "--json"]
            + [*KINDS[self.kind], *flags],
            cwd=self.root,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_for(self, name: str, proc: subprocess.Popen[str] | None = None) -> None:
        deadline = time.monotonic() + HANG_GUARD
        while not (self.flags / name).exists():
            assert proc is None or proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no {name}"
            time.sleep(0.05)

    def note_of(self, task_id: str) -> str:
        shown = json.loads(self.ralph("show", task_id, "--json").stdout)
        return json.dumps(shown)


@pytest.fixture(params=list(KINDS))
def door(request: pytest.FixtureRequest, tmp_path: Path) -> Door:
    root = init_repo(tmp_path / "repo", {"README.md": "start\n", ".gitignore": "*.pyc\n"})
    (root / "second.txt").write_text("the commit before the run\n")
    git(root, "add", "second.txt")
    git(root, "commit", "-qm", "second")
    (root / "notes.local").write_text("the user's own untracked file\n")
    git(root, "config", "core.excludesFile", str(tmp_path / "no-such-global-ignore"))
    (root / ".git" / "info" / "exclude").write_text("notes.local\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RALPH_", "ZOO_", "SIDE_")) or k == "RALPH_SANDBOX"
    }  # unsandboxed, as the suite's default: inside, the agent's git view makes these moot
    flags = tmp_path / "flags"
    flags.mkdir()
    env.update(HOME=str(tmp_path / "home"), SIDE_FLAGS=str(flags))
    config = tmp_path / "ralph.toml"
    config.write_text('backoff = "0.1s"\npoll = "0.1s"\nkill_grace = 2.0\n')
    d = Door(root, request.param, env, config, tmp_path, "", git(root, "rev-parse", "HEAD"))
    d.flags = flags
    d.user_files = {
        "notes.local": b"the user's own untracked file\n",
        ".git/info/exclude": b"notes.local\n",
        ".git/config": (root / ".git" / "config").read_bytes(),
    }
    return d


def test_an_agent_adding_to_info_exclude_hides_no_task_s_work(door: Door):
    door.add("T1", "T2", "T3")
    env = {"SIDE_DOOR": "exclude", "SIDE_AFTER": "1"}
    if door.kind == "workers2":  # T2 is collected while T1's agent keeps `*.txt` excluded
        env["SIDE_WAIT_FOR"] = "T2"
    result = door.run("side_door.py", **env)
    door.check_landed(result)
    for task_id in door.tasks:
        assert door.name_status(task_id) == [("A", f"out/{task_id}.txt")]
    assert door.attempts() == dict.fromkeys(door.tasks, 1)
    door.check()


def test_work_hidden_by_a_gitignore_the_agent_wrote_fails_the_attempt_naming_the_files(
    door: Door,
):
    door.add("T1")
    agent = door.root.parent / "hides.py"
    agent.write_text(
        "import os, pathlib, sys\nsys.stdin.read()\nout = pathlib.Path('out')\n"
        "out.mkdir(exist_ok=True)\n(out / '.gitignore').write_text('*\\n')\n"
        "(out / (os.environ['RALPH_TASK_ID'] + '.txt')).write_text('hidden\\n')\n"
    )
    result = door.ralph(
        "run", "--agent-cmd", f"{sys.executable} {agent}", "--config", str(door.config),
        "--json", "--max-attempts", "1", *KINDS[door.kind],
    )  # fmt: skip
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"]) == (0, 1), summary
    note = door.note_of("T1")
    assert "out/T1.txt" in note and "out/.gitignore" in note
    assert git(door.root, "rev-parse", "main") == door.base
    door.check()


def test_an_agent_that_stashes_its_work_fails_the_attempt_and_the_users_stash_is_untouched(
    door: Door,
):
    (door.root / "README.md").write_text("the user's unfinished edit\n")
    git(door.root, "stash", "-q")
    stash_before = git(door.root, "stash", "list", "--format=%H %gs")
    door.add("T1", "T2")
    result = door.run("side_door.py", SIDE_DOOR="stash")
    door.check_landed(result)
    assert git(door.root, "stash", "list", "--format=%H %gs") == stash_before
    kept = "refs/ralph/attempts/T1/1-stash"
    assert git(door.root, "show", f"{kept}^3:out/T1.txt") == "T1 was here"
    assert door.attempts() == {"T1": 2, "T2": 1}
    for task_id in door.tasks:
        assert door.name_status(task_id) == [("A", f"out/{task_id}.txt")]
    door.check()


def test_an_agent_that_rewinds_history_never_lands_a_commit_reverting_the_one_before(
    door: Door,
):
    door.add("T1", "T2")
    result = door.run("side_door.py", SIDE_DOOR="rewind")
    door.check_landed(result)
    assert git(door.root, "show", "main:second.txt") == "the commit before the run"
    assert "the agent rewound history" in door.note_of("T1")
    assert door.attempts() == {"T1": 2, "T2": 1}
    for task_id in door.tasks:
        assert door.name_status(task_id) == [("A", f"out/{task_id}.txt")]
    door.check()


def test_a_git_replace_by_the_agent_is_taken_back_and_history_looks_as_it_is(door: Door):
    door.add("T1", "T2")
    result = door.run("side_door.py", SIDE_DOOR="replace")
    door.check_landed(result)
    assert git(door.root, "for-each-ref", "refs/replace/") == ""
    # kept by the worker(s) that looked first (with two, maybe by T2 while T1's agent ran)
    kept = git(door.root, "for-each-ref", "--format=%(refname)", "refs/ralph/attempts/")
    assert [ref for ref in kept.split() if "/1-replace-" in ref], kept
    subjects = git(door.root, "log", "--format=%s", "main").splitlines()
    assert subjects[-2:] == ["second", "start"], subjects
    for task_id in door.tasks:
        assert door.name_status(task_id) == [("A", f"out/{task_id}.txt")]
    door.check()


def _user_commits(door: Door) -> str:
    (door.root / "user.txt").write_text("committed by hand\n")
    git(door.root, "add", "user.txt")
    git(door.root, "commit", "-qm", "the user's own commit")
    return git(door.root, "rev-parse", "HEAD")


def test_a_commit_the_user_makes_during_a_run_stays_on_main(door: Door):
    # With two workers a second task's landing would update the main checkout while the user
    # commits there (git's index.lock: the user retries); one task keeps the test exact.
    door.add(*(["T1", "T2"] if door.kind == "checkout" else ["T1"]))
    run = door.start(SIDE_DOOR="wait", SIDE_GO="1")
    try:
        door.wait_for("T1.waiting", run)
        user = _user_commits(door)
        door.user_files["user.txt"] = b"committed by hand\n"
        (door.flags / "T1.go").write_text("")
        out, err = run.communicate(timeout=HANG_GUARD)
    finally:
        run.kill()
    result = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    door.check_landed(result)
    assert door.name_status("T1") == [("A", "out/T1.txt")]
    assert git(door.root, "show", "main:user.txt") == "committed by hand"
    door.check(kept=(user,))


def test_recovery_after_a_kill_keeps_a_commit_the_user_made_meanwhile(door: Door):
    door.add("T1")
    run = door.start("--lease", "2s", SIDE_DOOR="wait", SIDE_GO="1")
    try:
        door.wait_for("T1.waiting", run)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=HANG_GUARD)
    finally:
        run.kill()
    user = _user_commits(door)
    door.user_files["user.txt"] = b"committed by hand\n"
    result = None
    for _ in range(40):  # the killed run's claim has to expire (2 s lease)
        result = door.run("side_door.py", "--lease", "2s")
        assert git(door.root, "merge-base", "--is-ancestor", user, "main") == ""
        if json.loads(result.stdout or "{}").get("done"):
            break
        time.sleep(0.25)
    assert result is not None
    door.check_landed(result)
    assert door.name_status("T1") == [("A", "out/T1.txt")]
    door.check(kept=(user,))


SECOND = {"w2": ["--workers", "2"], "w2-names": ["--names", "A,B"], "checkout": []}


@pytest.mark.parametrize("second", list(SECOND))
def test_a_second_run_in_the_same_repository_is_refused_naming_the_first(door: Door, second: str):
    """Refused: anything beside a run in the checkout, a checkout run beside anything, and
    worker names already running. Worktree runs with their own names share the repository
    (several `ralph worker start` processes against one store: the seed's pattern)."""
    shares = door.kind == "workers2" and second == "w2-names"
    door.add("T1", "T2", "T3")
    mine = ["--names", "W1"] if shares else []  # one worker: T2 and T3 stay for the other
    run = door.start(*mine, SIDE_DOOR="wait", SIDE_GO="1")
    try:
        door.wait_for("T1.waiting", run)
        other = door.ralph(
            "run", "--agent-cmd", AGENT, "--config", str(door.config), "--json",
            *SECOND[second], *(["--max-tasks", "2"] if shares else []),
        )  # fmt: skip
        (door.flags / "T1.go").write_text("")
        out, err = run.communicate(timeout=HANG_GUARD)
    finally:
        run.kill()
    first = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    if shares:
        assert other.returncode == 0, other.stderr
        assert (json.loads(other.stdout)["done"], json.loads(out)["done"]) == (2, 1)
    else:
        assert other.returncode == 9, (other.stdout, other.stderr)
        assert f"pid {run.pid}" in other.stderr, other.stderr
        assert len(other.stderr.strip().splitlines()) == 1, other.stderr
    door.check_landed(first, ran=1 if shares else 3)
    door.check()
