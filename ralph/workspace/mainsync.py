"""The main checkout follows its branch without ever overwriting a byte of the user's.

When a landing moves the branch the main checkout has checked out, only the paths the move
changes are touched, and each of them only while it is provably ralph's: its index entry and its
file are a version some known commit has (the old head, the new one). A path the user edited is
left alone: before the move that makes the landing wait; found later (the user saved between the
check and the write, or while a killed landing left its marker) it keeps the user's bytes, a copy
goes to `refs/ralph/saved/<n>`, and the log says so. Paths outside the move are never looked at.

No check-then-act window on a file: each one is first renamed aside (atomic), checked, and only
then replaced by hard-linking the new version into place, which fails rather than overwrite a
file the user wrote meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ralph.workspace.git import Git

SAVED_REFS = "refs/ralph/saved/"
CHUNK = 500
_ALGOS: dict[Path, str] = {}  # a repository's object format, asked of git once


@dataclass(frozen=True)
class Entry:
    """A path's version: git mode and object id (a directory or an unreadable file gets an
    entry no commit has)."""

    mode: str
    oid: str


Version = Entry | None  # None: the path does not exist


@dataclass
class Synced:
    """What a sync did: the user's paths it left alone, and the ref holding a copy of them."""

    kept: list[str]
    saved: str | None = None
    strays: list[str] = field(default_factory=list)

    def note(self) -> str:
        if self.strays:
            return f"{self._kept()}; also kept {', '.join(self.strays)}"
        return self._kept()

    def _kept(self) -> str:
        if not self.kept:
            return ""
        more = f" and {len(self.kept) - 3} more" if len(self.kept) > 3 else ""
        shown = ", ".join(self.kept[:3]) + more
        copy = f"; a copy is in {self.saved}" if self.saved else ""
        return (
            f"kept your uncommitted changes to {shown} in the main checkout (not overwritten{copy})"
        )


class MainSync:
    """Index and files of the main checkout (`g`) moved path by path to a commit."""

    def __init__(self, g: Git, root: Path, scratch: Path):
        self.g, self.root, self.scratch = g, root, scratch
        self._algo: str | None = _ALGOS.get(root)
        self.strays: list[str] = []  # a user's file saved twice while it was checked
        # commit -> path -> its entry (None: absent), for the paths already read: a move's
        # own `changed` gives both ends, so checking and applying it starts no ls-tree
        self._trees: dict[str, dict[str, Entry | None]] = {}

    # -- reading ------------------------------------------------------------------------
    def changed(self, old: str, new: str) -> list[str]:
        """The paths a move from `old` to `new` changes (their entries at both ends kept)."""
        out = self.g("diff-tree", "-r", "-z", "--no-renames", "--raw", old, new).split("\0")
        paths = []
        before, after = self._trees.setdefault(old, {}), self._trees.setdefault(new, {})
        for meta, path in zip(out[0::2], out[1::2], strict=False):
            if not meta.startswith(":"):
                continue
            old_mode, new_mode, old_oid, new_oid, _ = meta[1:].split(" ", 4)
            before[path] = None if old_mode == "000000" else Entry(old_mode, old_oid)
            after[path] = None if new_mode == "000000" else Entry(new_mode, new_oid)
            paths.append(path)
        return paths

    def tree_entries(self, commit: str, paths: list[str]) -> dict[str, Entry]:
        known = self._trees.setdefault(commit, {})
        missing = [p for p in paths if p not in known]
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            out = self.g("--literal-pathspecs", "ls-tree", "-r", "-z", commit, "--", *chunk)
            found: dict[str, Entry | None] = dict.fromkeys(chunk)
            for item in out.split("\0"):
                if item:
                    meta, _, path = item.partition("\t")
                    mode, _, oid = meta.split(" ")
                    found[path] = Entry(mode, oid)
            known.update(found)
        return {p: e for p in paths if (e := known[p]) is not None}

    def index_entries(self, paths: list[str]) -> dict[str, Entry]:
        """Index entries; a conflicted path gets an entry no commit has."""
        found: dict[str, Entry] = {}
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start : start + CHUNK]
            out = self.g("--literal-pathspecs", "ls-files", "-s", "-z", "--", *chunk)
            for item in out.split("\0"):
                if item:
                    meta, _, path = item.partition("\t")
                    mode, oid, stage = meta.split(" ")
                    found[path] = Entry(mode, oid) if stage == "0" else Entry("conflict", "")
        return found

    def file_version(self, full: Path) -> Version:
        """The version a file in the working tree is, hashed as git would (no filters)."""
        try:
            st = full.lstat()
        except FileNotFoundError:
            return None
        except OSError:
            return Entry("unreadable", "")
        if stat.S_ISLNK(st.st_mode):
            return Entry("120000", self._oid(os.fsencode(os.readlink(full))))
        if not stat.S_ISREG(st.st_mode):
            return Entry("other", "")
        try:
            data = full.read_bytes()
        except OSError:
            return Entry("unreadable", "")
        return Entry("100755" if st.st_mode & 0o100 else "100644", self._oid(data))

    def _oid(self, data: bytes) -> str:
        if self._algo is None:
            fmt = self.g("rev-parse", "--show-object-format").strip() or "sha1"
            self._algo = _ALGOS[self.root] = "sha256" if fmt == "sha256" else "sha1"
        h = hashlib.new(self._algo)
        h.update(b"blob %d\0" % len(data))
        h.update(data)
        return h.hexdigest()

    def known(self, commits: list[str], paths: list[str]) -> dict[str, set[Version]]:
        """Every version of each path that one of `commits` has (None where it lacks it)."""
        versions: dict[str, set[Version]] = {p: set() for p in paths}
        for commit in dict.fromkeys(commits):
            entries = self.tree_entries(commit, paths)
            for p in paths:
                versions[p].add(entries.get(p))
        return versions

    def users(self, old: str, paths: list[str]) -> list[str]:
        """Of `paths`, those whose index entry or file is not `old`'s version: the user's."""
        want = self.tree_entries(old, paths)
        index = self.index_entries(paths)
        return [
            p
            for p in paths
            if index.get(p) != want.get(p)
            or not (_gitlink(want.get(p)) or self.is_one_of(self.root / p, p, {want.get(p)}))
        ]

    def is_one_of(self, full: Path, path: str, versions: set[Version]) -> bool:
        """Whether the file at `full` is one of `versions` of `path`; a file git stores through
        a filter (line endings, LFS) is hashed again the way `git add` would."""
        version = self.file_version(full)
        if version in versions:
            return True
        if version is None or version.mode not in ("100644", "100755"):
            return False
        try:
            oid = self.g("hash-object", f"--path={path}", "--", str(full))
        except Exception:
            return False
        return Entry(version.mode, oid) in versions

    # -- moving -------------------------------------------------------------------------
    def apply(self, want: str, known: list[str], paths: list[str]) -> Synced:
        """Index entries and files of `paths` at `want`'s version, where they are a version of
        one of `known` (ralph's); the user's are left as they are and copied to a saved ref."""
        self._take_back_aside(paths)
        versions = self.known([*known, want], paths)
        target = self.tree_entries(want, paths)
        index = self.index_entries(paths)
        self.scratch.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        set_index: dict[str, Version] = {}
        for n, p in enumerate(paths):
            ours = versions[p]
            if index.get(p) in ours and index.get(p) != target.get(p):
                set_index[p] = target.get(p)
            if any(_gitlink(v) for v in ours) or self._outside(p):
                continue  # a submodule's folder is its own; git never writes through a link
            if self.file_version(self.root / p) == target.get(p):
                continue
            if not self._swap(p, ours, target.get(p), want, n):
                kept.append(p)
        self._write_index(set_index)
        with contextlib.suppress(Exception):  # only stat data: status would refresh it too
            self.g("update-index", "-q", "--refresh")
        saved = self._save(want, kept) if kept else None
        return Synced(kept, saved, self.strays)

    def _take_back_aside(self, paths: list[str]) -> None:
        """A sync killed between renaming a file aside and linking the new one in left the
        path missing and its bytes in the scratch folder: put them back first (they are the
        old version or a user's, never to be taken for a deletion)."""
        if not self.scratch.is_dir():
            return
        keys = {_key(p): p for p in paths}
        for aside in self.scratch.glob("sync-aside-*"):
            path = keys.get(aside.name.rsplit("-", 1)[-1])
            if path is None or aside.name.startswith(f"sync-aside-{os.getpid()}-"):
                continue
            full = self.root / path
            if full.exists() or full.is_symlink():
                continue  # the path was written again since: the aside copy is only a copy
            with contextlib.suppress(OSError):
                full.parent.mkdir(parents=True, exist_ok=True)
                os.rename(aside, full)

    def _outside(self, path: str) -> bool:
        """Whether a folder on the way to `path` is a symlink (writing would leave the tree)."""
        folder = (self.root / path).parent
        while folder != self.root and self.root in folder.parents:
            if folder.is_symlink():
                return True
            folder = folder.parent
        return False

    def _swap(self, path: str, ours: set[Version], want: Version, commit: str, n: int) -> bool:
        """Replace the file at `path` by `want` if it is one of `ours`; False (the file left
        as the user has it) otherwise. The file is renamed aside first, so the check and the
        replacement see the same bytes; the new version is linked in place, which fails rather
        than overwrite a file written meanwhile."""
        full = self.root / path
        aside = self.scratch / f"sync-aside-{os.getpid()}-{_key(path)}"
        try:
            os.rename(full, aside)
            moved = True
        except FileNotFoundError:
            moved = False
        except OSError:
            return False  # a directory in the way, or unreadable: the user's
        if not (self.is_one_of(aside, path, ours) if moved else None in ours):
            self._put_back(aside, full)
            return False
        fresh = True
        if want is not None:
            fresh = self._link_in(full, want, commit, n)
        elif moved:
            self._prune_dirs(full.parent)
        if moved:
            aside.unlink(missing_ok=True)
        return fresh

    def _link_in(self, full: Path, want: Entry, commit: str, n: int) -> bool:
        if want.mode == "160000":  # a submodule's commit: no file of ours to write
            return True
        data = self.g(
            "cat-file", "blob", want.oid, stdout_as_string=False, strip_newline_in_stdout=False
        )
        tmp = self.scratch / f"sync-new-{os.getpid()}-{n}"
        tmp.unlink(missing_ok=True)
        if want.mode == "120000":
            os.symlink(os.fsdecode(data), tmp)  # type: ignore[arg-type]
        else:
            tmp.write_bytes(data)  # type: ignore[arg-type]
            os.chmod(tmp, 0o755 if want.mode == "100755" else 0o644)
        try:
            full.parent.mkdir(parents=True, exist_ok=True)
            os.link(tmp, full, follow_symlinks=False)
            return True
        except OSError:  # the user wrote the path meanwhile (or made a file where a folder goes)
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _put_back(self, aside: Path, full: Path) -> None:
        """The user's file goes back where it was, unless they wrote it again meanwhile (then
        the moved copy stays in the scratch folder, named in the log)."""
        try:
            if aside.is_dir() and not aside.is_symlink():
                if not full.exists():
                    os.rename(aside, full)
                return
            os.link(aside, full, follow_symlinks=False)
            aside.unlink()
        except FileNotFoundError:
            return
        except FileExistsError:
            kept = aside.with_name(f"user-copy-{int(time.time())}-{aside.name}")
            os.rename(aside, kept)
            self.strays.append(f"{full.relative_to(self.root)} (an earlier save) in {kept}")

    def _prune_dirs(self, folder: Path) -> None:
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _write_index(self, entries: dict[str, Version]) -> None:
        if not entries:
            return
        zero = "0" * (64 if self._algo == "sha256" else 40)
        lines = []
        for path, e in entries.items():
            lines.append(f"{e.mode} {e.oid}\t{path}" if e else f"0 {zero}\t{path}")
        self._index_info(lines)

    def _index_info(self, lines: list[str], env: dict[str, str] | None = None) -> None:
        with tempfile.TemporaryFile(dir=self.scratch) as fh:
            fh.write(("\0".join(lines) + "\0").encode())
            fh.seek(0)
            self.g("update-index", "-z", "--index-info", istream=fh, env=env)

    def _save(self, base: str, paths: list[str]) -> str | None:
        """A commit on `base` holding the user's files at `paths`, under refs/ralph/saved/."""
        lines = []
        for p in paths:
            version = self.file_version(self.root / p)
            if version is None or version.mode not in ("100644", "100755", "120000"):
                continue
            full = self.root / p
            data = os.fsencode(os.readlink(full)) if version.mode == "120000" else full.read_bytes()
            oid = self._write_blob(data)
            lines.append(f"{version.mode} {oid}\t{p}")
        if not lines:
            return None
        index = self.scratch / f"saved-index-{os.getpid()}"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            self.g("read-tree", base, env=env)
            self._index_info(lines, env)
            tree = self.g("write-tree", env=env)
        finally:
            index.unlink(missing_ok=True)
        commit = self.g(
            "commit-tree", tree, "-p", base, "-m", "ralph: the user's uncommitted changes, kept"
        )
        ref = f"{SAVED_REFS}{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{commit[:10]}"
        self.g("update-ref", ref, commit)
        return ref

    def _write_blob(self, data: bytes) -> str:
        with tempfile.TemporaryFile(dir=self.scratch) as fh:
            fh.write(data)
            fh.seek(0)
            return self.g("hash-object", "-w", "--no-filters", "--stdin", istream=fh)


def _key(path: str) -> str:
    """A file-name-safe key of a path, for its copy in the scratch folder."""
    return hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:16]


def _gitlink(version: Version) -> bool:
    return version is not None and version.mode == "160000"
