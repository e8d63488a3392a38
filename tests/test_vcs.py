"""GitRepo and RepoWorkspace against real repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ralph.errors import WorkspaceError
from ralph.store import ensure_ralph_dir
from ralph.vcs import GitRepo, RepoWorkspace


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    (root / "keep.txt").write_text("keep\n")
    (root / "old name.txt").write_text("rename me\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "start")
    ensure_ralph_dir(root)
    return root


def test_changes_list_edits_new_deleted_and_renamed_paths_but_not_ralph_dir(root: Path):
    (root / "keep.txt").write_text("edited\n")
    (root / "dir with space").mkdir()
    (root / "dir with space" / "new ü.txt").write_text("new\n")
    (root / "-leading-dash.txt").write_text("dash\n")
    git(root, "mv", "old name.txt", "new name.txt")
    (root / ".ralph" / "runs").mkdir()
    (root / ".ralph" / "runs" / "x").write_text("log\n")
    paths = sorted(c.path for c in GitRepo(root).changes())
    assert paths == [
        "-leading-dash.txt",
        "dir with space/new ü.txt",
        "keep.txt",
        "new name.txt",
        "old name.txt",
    ]


def test_commit_stages_only_the_given_paths_and_skips_empty_commits(root: Path):
    repo = GitRepo(root)
    assert repo.commit([], "nothing") is None
    (root / "a.txt").write_text("a\n")
    (root / "b.txt").write_text("b\n")
    (root / ":(glob)*.txt").write_text("magic-looking name\n")
    sha = repo.commit(["a.txt", ":(glob)*.txt", ".ralph/ralph.db"], "Add a")
    assert sha == git(root, "rev-parse", "HEAD").strip()
    assert sorted(git(root, "show", "--format=", "--name-only", "HEAD").split("\n")[:-1]) == [
        ":(glob)*.txt",
        "a.txt",
    ]
    assert git(root, "status", "--porcelain") == "?? b.txt\n"


def test_commit_records_a_deletion_and_a_rename(root: Path):
    repo = GitRepo(root)
    (root / "keep.txt").unlink()
    (root / "old name.txt").rename(root / "renamed.txt")
    repo.commit([c.path for c in repo.changes()], "Move things")
    assert git(root, "ls-files").split("\n")[:-1] == ["renamed.txt"]
    assert git(root, "status", "--porcelain") == ""


def test_discard_restores_head_and_keeps_a_patch(root: Path, tmp_path: Path):
    repo = GitRepo(root)
    (root / "keep.txt").write_text("ruined\n")
    (root / "old name.txt").unlink()
    (root / "junk").mkdir()
    (root / "junk" / "new.txt").write_text("junk\n")
    (root / "staged.txt").write_text("staged\n")
    git(root, "add", "staged.txt")
    patch = tmp_path / "changes.patch"
    workspace = RepoWorkspace.__new__(RepoWorkspace)
    workspace.repo, workspace.root, workspace.baseline = repo, root, set()
    workspace.discard(None, repo.changes(), keep=patch)  # type: ignore[arg-type]
    assert git(root, "status", "--porcelain") == ""
    assert (root / "keep.txt").read_text() == "keep\n"
    text = patch.read_text()
    assert "ruined" in text and "junk/new.txt" in text and "staged.txt" in text


def test_workspace_refuses_a_dirty_tree_unless_allowed_and_never_touches_those_paths(root: Path):
    (root / "keep.txt").write_text("user edit\n")
    with pytest.raises(WorkspaceError, match="uncommitted changes"):
        RepoWorkspace(GitRepo(root))
    workspace = RepoWorkspace(GitRepo(root), allow_dirty=True)
    (root / "agent.txt").write_text("agent\n")
    assert [c.path for c in workspace.changes()] == ["agent.txt"]
    workspace.discard(None, workspace.changes())  # type: ignore[arg-type]
    assert (root / "keep.txt").read_text() == "user edit\n"


def test_not_a_repository_is_a_workspace_error(tmp_path: Path):
    with pytest.raises(WorkspaceError, match="not inside a git repository"):
        GitRepo(tmp_path)


def test_undo_commit_takes_back_only_our_own_head(root: Path):
    repo = GitRepo(root)
    (root / "a.txt").write_text("a\n")
    sha = repo.commit(["a.txt"], "Add a")
    repo.undo_commit("0" * 40)
    assert repo.head() == sha
    repo.undo_commit(sha)
    assert git(root, "log", "--format=%s") == "start\n"
    assert (root / "a.txt").exists()


def test_commits_work_without_a_configured_identity(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "none"))
    monkeypatch.delenv("EMAIL", raising=False)
    for var in ("GIT_AUTHOR_EMAIL", "GIT_AUTHOR_NAME", "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_NAME"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "bare-identity"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "a.txt").write_text("a\n")
    assert GitRepo(root).commit(["a.txt"], "First") is not None
    assert git(root, "log", "--format=%an") == "ralph\n"


def test_commit_with_allow_dirty_leaves_the_users_staged_file_out(root: Path):
    (root / "mine.txt").write_text("user's own work\n")
    git(root, "add", "mine.txt")
    workspace = RepoWorkspace(GitRepo(root), allow_dirty=True)
    (root / "agent.txt").write_text("agent\n")
    sha = workspace.commit(None, workspace.changes(), "Agent work")  # type: ignore[arg-type]
    assert git(root, "show", "--name-only", "--format=", sha).split() == ["agent.txt"]
    assert git(root, "diff", "--cached", "--name-only").split() == ["mine.txt"]


def test_commit_on_a_clean_tree_commits_exactly_the_agents_paths(root: Path):
    workspace = RepoWorkspace(GitRepo(root))
    (root / "a.txt").write_text("a\n")
    (root / "sub").mkdir()
    (root / "sub" / "b.txt").write_text("b\n")
    sha = workspace.commit(None, workspace.changes(), "Agent work")  # type: ignore[arg-type]
    assert sorted(git(root, "show", "--name-only", "--format=", sha).split()) == [
        "a.txt",
        "sub/b.txt",
    ]
    assert git(root, "status", "--porcelain") == ""
