"""The GitHub CLI (`gh`), which users already have authenticated: issues as a task source,
comments when their task lands, and pull requests. Always an argv list, never a shell; task
text goes after its flag as one argument, never as a flag of its own. `GH_HOST` (GitHub
Enterprise) and `GH_TOKEN` are gh's own settings and pass through."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ralph.errors import GitHubError, UsageError

REPO = re.compile(r"^(?:(?P<host>[\w.-]+(?::\d+)?)/)?(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)$")
TIMEOUT = 120.0  # seconds for one gh call: a hung network never holds a run


@dataclass(frozen=True)
class Repo:
    """`OWNER/NAME` (or `HOST/OWNER/NAME` for GitHub Enterprise), as gh's `-R` takes it."""

    owner: str
    name: str
    host: str | None = None

    @classmethod
    def parse(cls, text: str) -> Repo:
        found = REPO.match(text.strip())
        if not found:
            raise UsageError(
                f"{text!r} is not a GitHub repository",
                hint="write it as github:OWNER/REPO (or github:HOST/OWNER/REPO)",
            )
        return cls(found["owner"], found["name"], found["host"])

    def __str__(self) -> str:
        return f"{self.host}/{self.owner}/{self.name}" if self.host else f"{self.owner}/{self.name}"


def gh(args: list[str], *, cwd: Path | None = None, timeout: float = TIMEOUT) -> str:
    """Run `gh ARGS`; returns its stdout. Failures raise GitHubError with gh's own first line."""
    exe = shutil.which("gh")
    if exe is None:
        raise GitHubError(
            "the GitHub CLI `gh` is not installed",
            hint="install it (Debian/Ubuntu: apt install gh; macOS: brew install gh), then "
            "run `gh auth login`",
        )
    env = {**os.environ, "GH_PROMPT_DISABLED": "1", "GH_NO_UPDATE_NOTIFIER": "1", "NO_COLOR": "1"}
    try:
        done = subprocess.run(
            [exe, *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise GitHubError(
            f"`gh {args[0]} {args[1] if len(args) > 1 else ''}` did not answer in {timeout:.0f} s",
            hint="check your network and `gh auth status`",
        ) from None
    if done.returncode != 0:
        said = next((ln.strip() for ln in done.stderr.splitlines() if ln.strip()), "no message")
        hint = "run `gh auth login`" if "auth" in said.lower() else "check `gh auth status`"
        raise GitHubError(f"gh {args[0]} {args[1]} failed: {said}", hint=hint)
    return done.stdout


def gh_json(args: list[str], *, cwd: Path | None = None) -> Any:
    out = gh(args, cwd=cwd)
    try:
        return json.loads(out or "null")
    except json.JSONDecodeError:
        raise GitHubError(f"gh {args[0]} {args[1]} printed something that is not JSON") from None


def list_issues(repo: Repo, *, label: str | None, state: str, limit: int = 1000) -> list[dict]:
    args = ["issue", "list", "-R", str(repo), "--state", state, "--limit", str(limit)]
    if label:
        args += ["--label", label]
    args += ["--json", "number,title,body,labels,state,url"]
    found = gh_json(args)
    return found if isinstance(found, list) else []


def comment(repo: Repo, number: int, body: str) -> None:
    gh(["issue", "comment", str(number), "-R", str(repo), "--body", body])


def close_issue(repo: Repo, number: int) -> None:
    gh(["issue", "close", str(number), "-R", str(repo)])


def issue_comments(repo: Repo, number: int) -> list[str]:
    found = gh_json(["issue", "view", str(number), "-R", str(repo), "--json", "comments"])
    return [c.get("body") or "" for c in (found or {}).get("comments") or []]


# -- pull requests ([land] mode = "pr", ralph/review/pulls.py) ---------------------------------
def repo_of_url(url: str) -> Repo | None:
    """The GitHub repository a git remote's URL names (`git@github.com:o/n.git`,
    `https://github.com/o/n`, `ssh://git@host/o/n.git`), or None for a local path."""
    found = re.match(
        r"^(?:[a-z+]+://)?(?:[^@/]+@)?(?P<host>[\w.-]+(?::\d+)?)[:/](?P<owner>[\w.-]+)/"
        r"(?P<name>[\w.-]+?)(?:\.git)?/?$",
        url.strip(),
    )
    if not found or "." not in found["host"] and ":" not in found["host"]:
        return None
    host = found["host"]
    if not url.startswith(("http://", "https://")):  # an ssh port is not the web's
        host = host.split(":")[0]
    host = None if host in ("github.com", "www.github.com") else host
    return Repo(found["owner"], found["name"], host)


def pr_list_head(repo: Repo, head: str) -> list[dict[str, Any]]:
    """Every pull request (any state) whose head is the branch `head`, newest first."""
    found = gh_json(
        ["pr", "list", "-R", str(repo), "--head", head, "--state", "all",
         "--json", "number,state,url"]
    )  # fmt: skip
    return found if isinstance(found, list) else []


def pr_create(repo: Repo, *, head: str, base: str, title: str, body: str) -> str:
    """Open a pull request of `head` onto `base`; returns its URL (gh prints it last)."""
    out = gh(
        ["pr", "create", "-R", str(repo), "--head", head, "--base", base,
         f"--title={title}", f"--body={body}"]  # one argument each: a title "-x" is no flag
    )  # fmt: skip
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if not lines:
        raise GitHubError("gh pr create printed no URL")
    return lines[-1]


def pr_view(repo: Repo, number: int) -> dict[str, Any]:
    """A pull request's state, merge commit, reviews and comments."""
    found = gh_json(
        ["pr", "view", str(number), "-R", str(repo), "--json", "state,mergeCommit,reviews,comments"]
    )
    return found if isinstance(found, dict) else {}


def pr_number(url: str) -> int:
    """The number at the end of a pull request's URL."""
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise GitHubError(f"not a pull request URL: {url}")
    return int(tail)
