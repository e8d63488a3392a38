"""The commit that completed a task, read with the git binary: message, diff stat and diff."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

SHA = re.compile(r"^[0-9a-f]{7,64}$")
MAX_DIFF = 400_000  # characters of diff a page shows; the rest is summarised


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace")


def task_commit(repo: Path, task_id: str) -> str | None:
    """The commit of a task whose store row has none (done before ralph recorded it): the
    task's ref `refs/ralph/tasks/<id>`, else the newest commit with a `Task: <id>` trailer."""
    ref = _git(repo, "rev-parse", "--verify", "-q", f"refs/ralph/tasks/{task_id}^{{commit}}")
    if ref and ref.strip():
        return ref.strip()
    pattern = "^Task: " + task_id.replace(".", "[.]") + "$"
    found = _git(repo, "log", "--all", "-1", "--format=%H", "-E", f"--grep={pattern}")
    return found.strip() or None if found else None


def commit_info(
    repo: Path | None, sha: str | None, task_id: str | None = None
) -> dict[str, Any] | None:
    """{sha, subject, body, author, date, stat, diff, truncated, found}; None without a commit."""
    if not sha and repo is not None and task_id is not None:
        sha = task_commit(repo, task_id)
    if not sha:
        return None
    info: dict[str, Any] = {"sha": sha, "found": False}
    if repo is None or not SHA.match(sha):
        return info
    head = _git(repo, "show", "-s", "--format=%H%n%an <%ae>%n%aI%n%B", sha, "--")
    if head is None:
        return info
    full, author, date, *message = head.split("\n")
    stat = _git(repo, "show", "--format=", "--stat=120", sha, "--") or ""
    diff = _git(repo, "show", "--format=", "--patch", "--no-color", sha, "--") or ""
    text = "\n".join(message).strip()
    subject, _, body = text.partition("\n")
    info.update(
        found=True,
        sha=full,
        author=author,
        date=date,
        subject=subject,
        body=body.strip(),
        stat=stat.rstrip(),
        diff=diff[:MAX_DIFF],
        truncated=max(0, len(diff) - MAX_DIFF),
    )
    return info
