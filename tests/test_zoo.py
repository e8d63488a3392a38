"""The agent zoo: `ralph run` (real CLI, real git) with agents that behave like real ones do.

Each test runs a few tasks of one zoo agent (tests/agents/README.md) in a fresh repository,
either in the checkout (one worker) or with `--workers 2` (worktrees), and checks what landed on
main: one commit per task with ralph's trailers holding exactly the expected changes, every task
done, a clean working tree, and that a plain task still works afterwards.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gitutil import git, init_repo

from ralph import reaper
from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]
TASKS = ["T1", "T2", "T3"]
KINDS = {"checkout": [], "workers2": ["--workers", "2"]}

pytestmark = pytest.mark.skipif(not reaper.available(), reason="the zoo checks processes in /proc")


@dataclass
class Zoo:
    """One repository, its store and the environment every `ralph` of the test runs with."""

    root: Path
    kind: str
    env: dict[str, str]
    config: Path
    pid_dir: Path
    run_id: str
    base: str
    tasks: list[str] = field(default_factory=list)

    def ralph(self, *args: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        return run_ralph(*args, cwd=self.root, env={**self.env, **env}, timeout=timeout)

    def add(self, *ids: str) -> None:
        for task_id in ids:
            result = self.ralph("add", f"Task {task_id}", "--id", task_id)
            assert result.returncode == 0, result.stderr
            self.tasks.append(task_id)

    def run(self, script: str, *flags: str, **env: str) -> subprocess.CompletedProcess:
        """`ralph run [flags]` with a zoo agent until the queue is drained."""
        cmd = shlex.join([sys.executable, str(AGENTS / script)])
        return self.ralph(
            "run",
            "--agent-cmd",
            cmd,
            "--config",
            str(self.config),
            "--json",
            *KINDS[self.kind],
            *flags,
            **env,
        )

    def commits(self) -> list[tuple[str, str]]:
        """(sha, Task trailer) of every commit on main after the first, oldest first."""
        fmt = "--format=%H %(trailers:key=Task,valueonly,separator=|)"
        out = git(self.root, "log", "--reverse", fmt, f"{self.base}..main")
        return [(line.split(" ", 1) + [""])[:2] for line in out.splitlines()]  # type: ignore[misc]

    def commit_of(self, task_id: str) -> str:
        found = [sha for sha, task in self.commits() if task.strip() == task_id]
        assert len(found) == 1, f"commits for {task_id}: {found}"
        return found[0]

    def name_status(self, task_id: str) -> list[tuple[str, ...]]:
        """What the task's commit changed: ("A", path), ("D", path) or ("R", old, new), sorted;
        the progress log ralph itself appends to (the RALPH memory) is left out."""
        raw = subprocess.run(
            ["git", "show", "--name-status", "-z", "--format=", "-M", self.commit_of(task_id)],
            cwd=self.root,
            check=True,
            capture_output=True,
        ).stdout.decode()
        fields = raw.strip("\0\n").split("\0") if raw.strip("\0\n") else []
        entries: list[tuple[str, ...]] = []
        i = 0
        while i < len(fields):
            code = fields[i].strip("\n")
            if code[0] in "RC":
                entries.append((code[0], fields[i + 1], fields[i + 2]))
                i += 3
            else:
                entries.append((code[0], fields[i + 1]))
                i += 2
        return sorted(e for e in entries if e[-1] != "progress.md")

    def body(self, task_id: str) -> str:
        return git(self.root, "log", "-1", "--format=%B", self.commit_of(task_id))

    def check_landed(self, result: subprocess.CompletedProcess, ran: int | None = None) -> None:
        """The run succeeded and did `ran` tasks (default: all); one commit per task on main, no
        merges, every task done, a clean tree."""
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        ran = len(self.tasks) if ran is None else ran
        assert (summary["exit_code"], summary["done"]) == (0, ran), summary
        trailers = [task for _, task in self.commits()]
        assert sorted(trailers) == sorted(self.tasks), trailers
        assert git(self.root, "rev-list", "--merges", "main") == ""
        listed = json.loads(self.ralph("list", "--json").stdout)
        assert {t["id"]: t["status"] for t in listed} == dict.fromkeys(self.tasks, "done")
        self.check_clean()

    def check_clean(self) -> None:
        assert git(self.root, "status", "--porcelain", "--untracked-files=all") == ""
        assert git(self.root, "symbolic-ref", "HEAD") == "refs/heads/main"
        worktrees = self.root / ".ralph" / "worktrees"
        for tree in worktrees.iterdir() if worktrees.exists() else ():
            assert git(tree, "status", "--porcelain", "--untracked-files=all") == "", tree

    def check_plain_task_still_works(self) -> None:
        self.add("P")
        result = self.run("edit.py")
        self.check_landed(result, ran=1)
        assert self.name_status("P") == [("A", "work/P.txt")]

    def check_nothing_left_running(self) -> None:
        assert reaper.find_env(ZOO_RUN=self.run_id) == []


@pytest.fixture(params=list(KINDS))
def zoo(request: pytest.FixtureRequest, tmp_path: Path) -> Zoo:
    files = {"README.md": "start\n", ".gitignore": "*.pyc\n"}
    for task_id in TASKS:
        files[f"a_{task_id}.txt"] = f"rename me ({task_id})\n"
        files[f"rm_{task_id}.txt"] = f"delete me ({task_id})\n"
    root = init_repo(tmp_path / "repo", files)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RALPH_", "ZOO_")) or k == "RALPH_SANDBOX"
    }
    run_id = uuid.uuid4().hex
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    env.update(HOME=str(tmp_path / "home"), ZOO_RUN=run_id, ZOO_PID_DIR=str(pid_dir))
    config = tmp_path / "ralph.toml"
    config.write_text('backoff = "0.1s"\npoll = "0.1s"\nkill_grace = 2.0\n')
    return Zoo(root, request.param, env, config, pid_dir, run_id, git(root, "rev-parse", "HEAD"))


def test_an_agent_that_commits_twice_becomes_one_task_commit_naming_its_commits(zoo: Zoo):
    zoo.add("T1", "T2")
    zoo.check_landed(zoo.run("commits_itself.py"))
    for task_id in ("T1", "T2"):
        assert zoo.name_status(task_id) == [("A", f"out/{task_id}.txt")]
        body = zoo.body(task_id)
        assert body.splitlines()[0] == f"Task {task_id}"
        assert f"agent: {task_id}" in body and f"agent: {task_id} again" in body
        assert (
            git(zoo.root, "show", f"main:out/{task_id}.txt")
            == f"{task_id}: first\n{task_id}: second"
        )
    zoo.check_plain_task_still_works()


def test_an_own_commit_and_uncommitted_work_become_one_task_commit(zoo: Zoo):
    zoo.add("T1", "T2")
    zoo.check_landed(zoo.run("commits_and_leaves_dirty.py"))
    for task_id in ("T1", "T2"):
        assert zoo.name_status(task_id) == [
            ("A", f"out/{task_id}.extra"),
            ("A", f"out/{task_id}.txt"),
        ]
        assert f"agent: {task_id}" in zoo.body(task_id)
    zoo.check_plain_task_still_works()


def test_git_mv_is_committed_as_a_rename(zoo: Zoo):
    zoo.add("T1", "T2")
    zoo.check_landed(zoo.run("git_mv.py"))
    for task_id in ("T1", "T2"):
        assert zoo.name_status(task_id) == [("R", f"a_{task_id}.txt", f"b_{task_id}.txt")]
    zoo.check_plain_task_still_works()


def test_git_rm_is_committed_as_a_deletion(zoo: Zoo):
    zoo.add("T1", "T2")
    zoo.check_landed(zoo.run("git_rm.py"))
    for task_id in ("T1", "T2"):
        assert zoo.name_status(task_id) == [("D", f"rm_{task_id}.txt")]
    zoo.check_plain_task_still_works()


@pytest.mark.parametrize("script", ["switch_branch.py", "detach_head.py"])
def test_work_committed_on_another_branch_or_a_detached_head_lands_and_is_kept(
    zoo: Zoo, script: str
):
    zoo.add("T1", "T2")
    zoo.check_landed(zoo.run(script))
    for task_id in ("T1", "T2"):
        assert zoo.name_status(task_id) == [("A", f"out/{task_id}.txt")]
        kept = git(
            zoo.root, "for-each-ref", "--format=%(objectname)", f"refs/ralph/attempts/{task_id}/"
        )
        assert kept, f"the agent's own commits of {task_id} were not kept"
        for sha in kept.splitlines():
            changed = git(zoo.root, "diff", "--name-only", f"{sha}^", sha)
            assert changed == f"out/{task_id}.txt"  # the agent's own commit, kept as it was
    zoo.check_plain_task_still_works()


def test_prose_about_401_and_429_changes_nothing(zoo: Zoo):
    zoo.add("T1", "T2")
    result = zoo.run("prose_401.py")
    zoo.check_landed(result)
    summary = json.loads(result.stdout)
    assert [t["outcome"] for t in summary["tasks"]] == ["success", "success"]
    assert summary["stop_reason"] is None
    assert "rate limit" not in result.stderr.lower() and "authenticat" not in result.stderr.lower()
    for task_id in ("T1", "T2"):
        assert zoo.name_status(task_id) == [("A", f"out/{task_id}.txt")]
    zoo.check_plain_task_still_works()


@pytest.mark.parametrize("hooks_path", ["0", "1"], ids=["hooks-dir", "core.hooksPath"])
def test_hooks_an_agent_installs_never_run_at_ralphs_commit(zoo: Zoo, hooks_path: str):
    zoo.add("T1", "T2")
    zoo.check_landed(zoo.run("writes_hook.py", ZOO_HOOKSPATH=hooks_path))
    for task_id in ("T1", "T2"):
        assert zoo.name_status(task_id) == [("A", f"out/{task_id}.txt")]
    zoo.check_plain_task_still_works()
    common = Path(git(zoo.root, "rev-parse", "--path-format=absolute", "--git-common-dir"))
    ran = common / "zoo-hooks-ran"
    assert not ran.exists(), ran.read_text()


def test_a_setsid_daemon_is_dead_after_the_run_and_its_log_stops(zoo: Zoo):
    zoo.add("T1", "T2")
    zoo.check_landed(zoo.run("setsid_daemon.py"))
    zoo.check_nothing_left_running()
    for task_id in ("T1", "T2"):
        pid = int((zoo.pid_dir / f"daemon_{task_id}.pid").read_text())
        assert reaper.start_time(pid) is None
        assert zoo.name_status(task_id) == sorted(
            [("A", f"out/daemon_{task_id}.log"), ("A", f"out/{task_id}.txt")]
        )
    zoo.check_plain_task_still_works()


def test_an_aider_style_gitignore_edit_is_committed_once_and_its_history_file_is_not(zoo: Zoo):
    """What lands today: the agent's `.aider*` line is part of the first task's commit (the lead
    decides whether it should be)."""
    zoo.add("T1", "T2")
    zoo.check_landed(zoo.run("edits_gitignore.py"))
    changes = {task_id: zoo.name_status(task_id) for task_id in ("T1", "T2")}
    with_ignore = [t for t, c in changes.items() if ("M", ".gitignore") in c]
    assert len(with_ignore) == 1, changes
    for task_id, entries in changes.items():
        expected = [("A", f"out/{task_id}.txt")]
        if task_id in with_ignore:
            expected.append(("M", ".gitignore"))
        assert entries == sorted(expected)
    assert git(zoo.root, "show", "main:.gitignore").splitlines() == ["*.pyc", ".aider*"]
    assert git(zoo.root, "log", "--all", "--format=", "--name-only", "--", ".aider*") == ""
    zoo.check_plain_task_still_works()


ODD = [
    "with space.txt",
    "ünïcødé-名前.txt",
    "-rf.txt",
    "new\nline.txt",
    "*",
    ":(exclude)x",
    "tab\there.txt",
    'quote"s.txt',
    "back\\slash.txt",
    "trailing space ",
    "--",
    ".hidden",
]


def tree(root: Path, rev: str, prefix: str) -> dict[str, str]:
    """path -> mode of every file under `prefix` in `rev`, read with -z (names kept exactly)."""
    raw = subprocess.run(
        ["git", "ls-tree", "-r", "-z", rev, "--", prefix],
        cwd=root,
        check=True,
        capture_output=True,
        env={**os.environ, "GIT_LITERAL_PATHSPECS": "1"},
    ).stdout.decode()
    out = {}
    for entry in filter(None, raw.split("\0")):
        meta, path = entry.split("\t", 1)
        out[path] = meta.split()[0]
    return out


def test_odd_file_names_round_trip_exactly_and_ralph_files_stay_out(zoo: Zoo):
    zoo.add("T1", "T2")
    zoo.check_landed(zoo.run("odd_names.py"))
    for task_id in ("T1", "T2"):
        base = f"out/{task_id}/"
        expected = {base + name: "100644" for name in ODD}
        expected[base + "link"] = "120000"
        expected[base + "run.sh"] = "100755"
        expected[base + "blob.bin"] = "100644"
        sha = zoo.commit_of(task_id)
        assert tree(zoo.root, sha, base) == expected
        assert {e[1] for e in zoo.name_status(task_id)} == set(expected)
        blob = subprocess.run(
            ["git", "cat-file", "blob", f"{sha}:{base}blob.bin"],
            cwd=zoo.root,
            check=True,
            capture_output=True,
        ).stdout
        assert blob == random.Random(task_id).randbytes(5 * 1024 * 1024)
        assert git(zoo.root, "cat-file", "blob", f"{sha}:{base}link") == "with space.txt"
    everything = git(zoo.root, "log", "--all", "--format=", "--name-only", "-z")
    assert not any(p.startswith(".ralph/") for p in everything.split("\0"))
    zoo.check_plain_task_still_works()


AWKWARD = "ab Z9 \t\n*?[]:()!'\"\\-#~^$&;|<>{}%@=+,.`éñ名🙂\u0301\u200b"


def random_names(seed: int, count: int) -> list[str]:
    """Distinct file names from an alphabet of shell, glob, pathspec and unicode troublemakers."""
    rng = random.Random(seed)
    names: set[str] = set()
    while len(names) < count:
        name = "".join(rng.choice(AWKWARD) for _ in range(rng.randint(1, 16)))
        if rng.random() < 0.3:
            name = rng.choice(["-", ":", ":(", "--", "!", "~", "*"]) + name
        if name in (".", "..") or name.lower().startswith((".git", "git~")):
            continue  # names git itself refuses everywhere
        names.add(name)
    return sorted(names)


def test_generated_awkward_names_round_trip_through_a_task_commit(zoo: Zoo, tmp_path: Path):
    names = random_names(seed=20261129, count=30)
    listing = tmp_path / "names.json"
    listing.write_text(json.dumps(names))
    zoo.add("T1")
    zoo.check_landed(zoo.run("odd_names.py", ZOO_NAMES=str(listing)))
    assert sorted(tree(zoo.root, zoo.commit_of("T1"), "out/T1/")) == sorted(
        f"out/T1/{n}" for n in names
    )
    for name in names:
        shown = subprocess.run(
            ["git", "cat-file", "blob", f"main:out/T1/{name}"],
            cwd=zoo.root,
            check=True,
            capture_output=True,
        ).stdout.decode()
        assert shown == name + "\n"


def test_an_agent_orphaned_by_a_killed_run_is_ended_before_its_workspace_is_reused(zoo: Zoo):
    """SIGKILL the whole `ralph run`; its agent lives on writing into the workspace. The next
    run must end it before reusing the workspace, and commit none of its late writes."""
    zoo.add("T1")
    cmd = shlex.join([sys.executable, str(AGENTS / "orphan_writer.py")])
    args = ["run", "--agent-cmd", cmd, "--config", str(zoo.config), "--lease", "2s"]
    first = subprocess.Popen(
        [*RALPH, *args, *KINDS[zoo.kind]],
        cwd=zoo.root,
        env=zoo.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pid_file = zoo.pid_dir / "orphan_T1.pid"
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text().endswith("\n")):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    orphan = int(pid_file.read_text())
    assert reaper.start_time(orphan) is not None  # it outlived ralph
    result = None
    for _ in range(20):  # the claim has to expire (2 s lease) before the task is ready again
        result = zoo.run("orphan_writer.py", "--lease", "2s")
        if json.loads(result.stdout or "{}").get("done"):
            break
        time.sleep(0.5)
    assert result is not None
    zoo.check_nothing_left_running()
    zoo.check_landed(result)
    assert zoo.name_status("T1") == [("A", "out/T1.txt")]
    zoo.check_plain_task_still_works()
