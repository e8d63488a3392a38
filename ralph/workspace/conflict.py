"""A merge in progress in a worker's worktree, for an agent to resolve a landing's conflict.

Git only, never the store (like every workspace module). `start` puts the worktree at the
target's current head and merges the task's would-be commit into it with `git merge --no-commit`:
the conflicted files hold markers (diff3 style: ours, the common base, theirs), `HEAD` is the
target with the work that landed meanwhile and `MERGE_HEAD` the task's commit, so `git log`,
`git diff` and `git show MERGE_HEAD` tell both sides' stories. `end` drops the merge state and
leaves the files as the agent left them, so the usual collect takes the result like any
attempt's (and `settle`, which aborts a merge in progress, cannot throw the resolution away).
`markers` names the files of a result that still hold conflict markers: such a result never lands.
"""

from __future__ import annotations

import contextlib
import re

from git.exc import GitCommandError

from ralph.workspace.git import Change, Git

MERGE_STATE = ("MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "AUTO_MERGE")
# A conflict marker line: seven '<', '|' or '>' at the start of a line, then a space or the end.
_MARKER = re.compile(rb"^(<{7}|>{7}|\|{7})( |$)", re.MULTILINE)


def start(g: Git, head: str, commit: str) -> list[str]:
    """The worktree detached at `head` with `commit` merged in and not committed; returns the
    conflicted paths ([] when the merge went through cleanly or did not start)."""
    g("checkout", "-q", "-f", "--detach", head)
    g("clean", "-ffdq")
    with contextlib.suppress(GitCommandError):  # exit 1: conflicts, which is the point
        g("-c", "merge.conflictStyle=diff3", "merge", "--no-commit", "--no-ff", "-q", commit)
    if not (g.git_dir() / "MERGE_HEAD").is_file():
        return []
    out = g("diff", "--name-only", "--diff-filter=U", "-z")
    return sorted({p for p in out.split("\0") if p})


def end(g: Git) -> None:
    """Forget the merge (its state files, the unmerged index entries); the files stay as they
    are, whether the agent committed the merge, staged it or only edited the files."""
    gitdir = g.git_dir()
    for name in MERGE_STATE:
        (gitdir / name).unlink(missing_ok=True)
    (gitdir / "index.lock").unlink(missing_ok=True)
    with contextlib.suppress(GitCommandError):
        g("reset", "-q")


def markers(g: Git, base: str, tree: str, changes: list[Change]) -> list[str]:
    """The changed paths of `tree` holding more conflict-marker lines than they had in `base`
    (a file that legitimately holds such lines already is judged by the ones added)."""
    left = []
    for change in changes:
        if change.code == "D":
            continue
        now = _count(g, f"{tree}:{change.path}")
        if now and now > _count(g, f"{base}:{change.path}"):
            left.append(change.path)
    return left


def _count(g: Git, spec: str) -> int:
    try:
        data = g("cat-file", "blob", spec, stdout_as_string=False)
    except GitCommandError:
        return 0
    return len(_MARKER.findall(data)) if isinstance(data, bytes) else 0


def landed_since(g: Git, base: str, head: str, files: list[str], limit: int = 20) -> list[str]:
    """`<short sha> <subject>` of the commits on the target since the task's base that touched
    the conflicted files (all of them since the base when none did)."""
    for paths in (files, []):
        with contextlib.suppress(GitCommandError):
            out = g("log", "--format=%h %s", f"-{limit}", f"{base}..{head}", "--", *paths)
            found = [line for line in out.splitlines() if line.strip()]
            if found:
                return found
    return []
