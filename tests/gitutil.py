"""Real git repositories for tests: run git, and make a repository with a first commit."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run git in `cwd` and return its stripped stdout; a failure fails the test. `env` adds
    variables (an agent's committer marker, from `workspace.agent_env()`)."""
    full = {**os.environ, **env} if env else None
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=full
    ).stdout.strip()


def init_repo(root: Path, files: Mapping[str, str], message: str = "start") -> Path:
    """A repository on `main` with a test identity and `files` in its first commit."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    for name, text in files.items():
        (root / name).write_text(text)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", message)
    return root


def check_history(
    root: Path,
    base: str,
    done: Iterable[str],
    *,
    target: str = "main",
    kept: Iterable[str] = (),
    user_files: Mapping[str, bytes] | None = None,
    attempts: Mapping[str, int] | None = None,
    max_attempts: int | None = None,
) -> None:
    """What must hold after any run, whatever the agents did: the target still holds `base`
    and every commit in `kept` (a user's own); each task in `done` has exactly one commit in
    base..target (its `Task:` trailer), and no trailer names a task not done; no commit puts a
    path back to a state an earlier commit of the range had replaced (a revert: e.g. a task
    commit that undoes the commit before it); `user_files` (path: bytes, under `root`) are
    byte-identical; `git fsck` is clean; no task used more than `max_attempts` attempts."""
    tip = git(root, "rev-parse", target)
    for sha in [base, *kept]:
        holds = subprocess.run(["git", "merge-base", "--is-ancestor", sha, tip], cwd=root)
        assert holds.returncode == 0, f"{target} lost {sha}"
    fmt = "--format=%H %(trailers:key=Task,valueonly,separator=|)"
    rows = [line.split(" ", 1) for line in git(root, "log", fmt, f"{base}..{tip}").splitlines()]
    trailers = [row[1].strip() for row in rows if len(row) > 1 and row[1].strip()]
    done = sorted(done)
    assert sorted(set(trailers)) == sorted(set(trailers) & set(done)), (trailers, done)
    for task in done:
        assert trailers.count(task) == 1, f"{task} has {trailers.count(task)} commits: {trailers}"
    states: dict[str, list[str]] = {}
    for sha in git(root, "rev-list", "--reverse", "--first-parent", f"{base}..{tip}").split():
        raw = git(root, "diff-tree", "-r", "--no-renames", "-z", "--no-commit-id", f"{sha}^", sha)
        fields = raw.split("\0")
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(":"):
                continue
            old, new = meta.split()[2:4]
            seen = states.setdefault(path, [old])
            assert new not in seen[:-1], f"{sha[:10]} reverts {path} to an earlier state"
            seen.append(new)
    for name, data in (user_files or {}).items():
        assert (root / name).read_bytes() == data, f"{name} changed"
    fsck = subprocess.run(
        ["git", "fsck", "--no-progress", "--no-dangling"], cwd=root, capture_output=True, text=True
    )
    assert fsck.returncode == 0 and not fsck.stdout.strip(), fsck.stdout + fsck.stderr
    if max_attempts is not None:
        over = {t: n for t, n in (attempts or {}).items() if n > max_attempts}
        assert not over, f"more than {max_attempts} attempts: {over}"
