"""The per-attempt git directory a sandboxed agent sees in place of the repository's own.

Real agents commit, switch branches, stash and reset, so the agent needs a writable `.git`; the
repository's own must stay out of its reach (the target branch, other workers' branches,
`refs/ralph/*`, config, hooks, info/exclude, refs/stash). So each attempt gets a small git
directory of its own under its run dir, `<run>/git`:

- `HEAD` as the workspace has it (the target branch in a single checkout, detached in a
  worktree), `packed-refs` listing the repository's branches, tags and remote branches as they
  are now (so `git log main` works), its own empty `refs/`;
- `objects/` of its own for what the agent writes, borrowing every existing object through
  `objects/info/alternates` from the real object store, which the sandbox mounts read-only at
  `OBJECTS_MOUNT` (a fixed path on the sandbox's private /tmp: in a single checkout the real
  `.git` is covered by the view, so its own path cannot be used);
- copies of the workspace's index, the repository's config, hooks and info/.

Inside the sandbox it is bound over the workspace's `.git` (a directory in a single checkout; in
a worktree, a new gitfile `gitdir: <run>/git` is bound over the worktree's gitfile), and the
real repository is read-only. Whatever the agent does to git lands in this throwaway directory;
ralph's collect still works on the work tree's files as without the sandbox. Afterwards ralph
puts back its own config (an agent could plant settings that run commands), reads the agent's
HEAD from here, and fetches its commits into the repository under the attempt's ref, so collect
can keep them, list their subjects, and see a rewind (a HEAD the base is not an ancestor of).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

OBJECTS_MOUNT = "/tmp/.ralph-git-objects"  # where the sandbox shows the real object store
_CLEAN_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


def _git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k not in _CLEAN_GIT_ENV}
    out = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**base, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


class GitView:
    """One attempt's git directory; `create()` before the agent, `finish()` after it."""

    def __init__(self, workspace: Path, run_dir: Path, base: str):
        self.workspace, self.base = workspace, base
        self.dir = run_dir / "git"
        self.gitfile = run_dir / "gitfile"  # bound over a worktree's `.git` file
        found = _git(
            "rev-parse", "--absolute-git-dir", "--git-common-dir", "--git-path", "index",
            cwd=workspace,
        ).splitlines()  # fmt: skip
        self.git_dir = Path(found[0])
        common = Path(found[1])
        self.common_dir = common if common.is_absolute() else (workspace / common).resolve()
        index = Path(found[2])
        self.index = index if index.is_absolute() else workspace / index
        self.objects = self.common_dir / "objects"
        self.dot_git = workspace / ".git"
        self._config = b""

    @property
    def is_gitfile(self) -> bool:
        """True in a worktree (its `.git` is a file naming the real git dir)."""
        return self.dot_git.is_file()

    def create(self) -> None:
        """Lay out the directory (a few small files; the objects are borrowed, not copied)."""
        v = self.dir
        if v.exists():
            shutil.rmtree(v)
        for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "info"):
            (v / sub).mkdir(parents=True, exist_ok=True)
        (v / "objects" / "info" / "alternates").write_text(OBJECTS_MOUNT + "\n")
        head_ref = _symbolic_head(self.workspace)
        (v / "HEAD").write_text(f"ref: {head_ref}\n" if head_ref else f"{self.base}\n")
        refs = _git(
            "for-each-ref", "--format=%(objectname) %(refname)",
            "refs/heads", "refs/tags", "refs/remotes", cwd=self.workspace,
        )  # fmt: skip
        (v / "packed-refs").write_text(refs)
        if head_ref and f" {head_ref}\n" not in refs:
            (v / head_ref).parent.mkdir(parents=True, exist_ok=True)
            (v / head_ref).write_text(f"{self.base}\n")
        config = self.common_dir / "config"
        self._config = _clean_config(config.read_bytes() if config.is_file() else b"")
        (v / "config").write_bytes(self._config)
        for name in ("info/exclude", "shallow"):
            src = self.common_dir / name
            if src.is_file():
                shutil.copyfile(src, v / name)
        hooks = self.common_dir / "hooks"
        if hooks.is_dir():
            shutil.copytree(
                hooks, v / "hooks", ignore=shutil.ignore_patterns("*.sample"), symlinks=True
            )
        if self.index.is_file():
            shutil.copyfile(self.index, v / "index")
        for name in ("MERGE_HEAD", "MERGE_MSG", "MERGE_MODE"):  # a resolution's merge (resolve.py)
            if (self.git_dir / name).is_file():
                shutil.copyfile(self.git_dir / name, v / name)
        for folder in {self.git_dir, self.common_dir}:
            for shared in folder.glob("sharedindex.*"):
                shutil.copyfile(shared, v / shared.name)
        if self.is_gitfile:
            self.gitfile.write_text(f"gitdir: {v}\n")

    def bwrap_args(self) -> list[str]:
        """The mounts that put this view in place of the workspace's `.git` (after the
        workspace itself is bound)."""
        args = ["--ro-bind", str(self.objects), OBJECTS_MOUNT]
        if self.is_gitfile:
            return [*args, "--ro-bind", str(self.gitfile), str(self.dot_git)]
        return [*args, "--bind", str(self.dir), str(self.dot_git)]

    def finish(self) -> str | None:
        """Make the view harmless to read (ralph's config back, the real object store as the
        alternate) and return the agent's HEAD commit, or None if it left none."""
        v = self.dir
        if not v.is_dir():
            return None
        # The agent wrote this folder and ralph's git reads it on the host: nothing in it may
        # point elsewhere (a symlinked pack dir or `commondir` would fetch another repository's
        # objects into this one).
        for path in sorted(v.rglob("*"), reverse=True):
            if path.is_symlink():
                path.unlink()
        for name in ("commondir", "gitdir", "objects/info/http-alternates"):
            gone = v / name
            if gone.is_dir():
                shutil.rmtree(gone, ignore_errors=True)
            else:
                gone.unlink(missing_ok=True)
        (v / "config").write_bytes(self._config)
        info = v / "objects" / "info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "alternates").write_text(f"{self.objects}\n")
        try:
            out = _git("--git-dir", str(v), "rev-parse", "--verify", "-q", "HEAD^{commit}")
        except subprocess.CalledProcessError:
            return None
        return out.strip() or None

    def import_commits(self, root: Path, head: str, ref: str) -> None:
        """Copy the agent's new objects into the repository (git checks them on the way in)
        and point `ref` at its HEAD."""
        if _has_commit(root, head):
            _git("update-ref", ref, head, cwd=root)
            return
        _git(
            "-c", "protocol.file.allow=always", "fetch", "-q", "--no-tags",
            "--no-write-fetch-head", "--no-recurse-submodules", str(self.dir),
            f"+HEAD:{ref}", cwd=root,
        )  # fmt: skip
        if _git("rev-parse", ref, cwd=root).strip() != head:
            _git("update-ref", ref, head, cwd=root)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.gitfile.unlink(missing_ok=True)


def _symbolic_head(path: Path) -> str:
    """The branch HEAD names ('refs/heads/main'), or '' when it is detached."""
    out = subprocess.run(
        ["git", "symbolic-ref", "-q", "HEAD"], cwd=path, capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else ""


def _has_commit(root: Path, sha: str) -> bool:
    return (
        subprocess.run(
            ["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=root, capture_output=True
        ).returncode
        == 0
    )


def _clean_config(data: bytes) -> bytes:
    """The repository's config for a standalone git dir: no `core.worktree` (the work tree is
    the folder holding `.git`) and not bare."""
    lines = [
        ln
        for ln in data.decode("utf-8", "replace").splitlines()
        if not ln.strip().replace(" ", "").lower().startswith(("worktree=", "bare="))
    ]
    return ("\n".join(lines) + "\n").encode()
