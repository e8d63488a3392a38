"""ralph.workspace.git: staging, one-tree commits and ref transactions on real repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from gitutil import git, init_repo

from ralph.errors import WorkspaceError
from ralph.store import ensure_ralph_dir
from ralph.workspace.git import (
    Change,
    Git,
    RefRaceError,
    attempt_ref,
    git_env,
    repo_root,
    task_ref,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "repo", {"keep.txt": "keep\n", "old name.txt": "rename me\n"})
    ensure_ralph_dir(root)
    return root


def tree_files(root: Path, rev: str) -> list[str]:
    return sorted(git(root, "ls-tree", "-r", "--name-only", "-z", rev).split("\0")[:-1] or [])


def test_stage_all_takes_edits_new_deleted_renamed_and_odd_names_but_never_ralph_dir(root: Path):
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    base = git(root, "rev-parse", "HEAD")
    (root / "keep.txt").write_text("edited\n")
    (root / "dir with space").mkdir()
    (root / "dir with space" / "new ü.txt").write_text("new\n")
    (root / "-leading-dash.txt").write_text("dash\n")
    (root / ":(glob)*.txt").write_text("magic-looking name\n")
    git(root, "mv", "old name.txt", "new name.txt")
    (root / ".ralph" / "runs").mkdir()
    (root / ".ralph" / "runs" / "x").write_text("log\n")

    g.stage_all()
    changes = g.staged(base)

    assert sorted(changes, key=lambda c: c.path) == [
        Change("A", "-leading-dash.txt"),
        Change("A", ":(glob)*.txt"),
        Change("A", "dir with space/new ü.txt"),
        Change("M", "keep.txt"),
        Change("A", "new name.txt"),
        Change("D", "old name.txt"),
    ]
    tree = g.write_tree()
    sha = g.commit_tree(tree, [base], "Agent work\n\nTask: t1\n")
    assert tree_files(root, sha) == [
        "-leading-dash.txt",
        ":(glob)*.txt",
        "dir with space/new ü.txt",
        "keep.txt",
        "new name.txt",
    ]
    assert git(root, "rev-list", "--parents", "-1", sha).split() == [sha, base]
    assert git(root, "rev-parse", "HEAD") == base  # commit-tree moves no ref


def test_a_force_added_ralph_dir_is_taken_out_of_the_index_again(root: Path):
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    base = git(root, "rev-parse", "HEAD")
    (root / ".ralph" / "secret.txt").write_text("not for the history\n")
    git(root, "add", "-f", ".ralph/secret.txt")
    (root / "a.txt").write_text("a\n")
    g.stage_all()

    assert g.staged(base) == [Change("A", "a.txt")]
    assert ".ralph/secret.txt" not in tree_files(root, g.write_tree())


def test_stage_all_leaves_excluded_paths_out(root: Path):
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    base = git(root, "rev-parse", "HEAD")
    (root / "keep.txt").write_text("user's edit\n")
    (root / "agent.txt").write_text("agent\n")
    g.stage_all(["keep.txt"])
    assert g.staged(base) == [Change("A", "agent.txt")]


def test_update_refs_moves_target_and_creates_the_task_ref_once_only(root: Path, tmp_path: Path):
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    base = git(root, "rev-parse", "HEAD")
    (root / "a.txt").write_text("a\n")
    g.stage_all()
    first = g.commit_tree(g.write_tree(), [base], "first")
    second = g.commit_tree(g.write_tree(), [base], "second")
    scratch = tmp_path / "scratch"

    g.update_refs(
        [f"create {task_ref('t1')} {first}", f"update refs/heads/main {first} {base}"], scratch
    )
    assert g.rev(task_ref("t1")) == first == g.rev("refs/heads/main")

    # The same task again (say, a holder whose lease ran out): git refuses the whole transaction.
    with pytest.raises(RefRaceError):
        g.update_refs(
            [f"create {task_ref('t1')} {second}", f"update refs/heads/main {second} {first}"],
            scratch,
        )
    assert g.rev(task_ref("t1")) == first == g.rev("refs/heads/main")
    # A target that moved meanwhile refuses it too, and the task ref is not created.
    with pytest.raises(RefRaceError):
        g.update_refs(
            [f"create {task_ref('t2')} {second}", f"update refs/heads/main {second} {base}"],
            scratch,
        )
    assert g.rev(task_ref("t2")) is None
    assert task_ref("t1") == "refs/ralph/tasks/t1"
    assert attempt_ref("t1", 2) == "refs/ralph/attempts/t1/2"


def test_merge_tree_merges_other_files_and_names_conflicting_ones(root: Path):
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    base = git(root, "rev-parse", "HEAD")

    def commit(files: dict[str, str]) -> str:
        for name, text in files.items():
            (root / name).write_text(text)
        g.stage_all()
        sha = g.commit_tree(g.write_tree(), [base], "x")
        g.reset_hard(base)
        return sha

    ours = commit({"keep.txt": "ours\n"})
    other_file = commit({"b.txt": "b\n"})
    same_line = commit({"keep.txt": "theirs\n"})

    tree, files = g.merge_tree(ours, other_file)
    assert tree is not None and files == []
    assert tree_files(root, tree) == ["b.txt", "keep.txt", "old name.txt"]
    assert g.merge_tree(ours, same_line) == (None, ["keep.txt"])


def test_save_patch_keeps_every_change_and_reset_hard_restores_the_base(root: Path, tmp_path: Path):
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    base = git(root, "rev-parse", "HEAD")
    assert g.save_patch(base, tmp_path / "none.patch") is False
    (root / "keep.txt").write_text("ruined\n")
    (root / "old name.txt").unlink()
    (root / "junk").mkdir()
    (root / "junk" / "new.txt").write_text("junk\n")
    (root / "ignored.log").write_text("user's\n")
    (root / ".git" / "info" / "exclude").write_text("*.log\n")
    (root / ".ralph" / "ralph.db").write_text("store\n")
    patch = tmp_path / "changes.patch"

    assert g.save_patch(base, patch)
    g.reset_hard(base)

    text = patch.read_text()
    assert "ruined" in text and "junk/new.txt" in text and "old name.txt" in text
    assert git(root, "status", "--porcelain") == ""
    assert (root / "keep.txt").read_text() == "keep\n" and (root / "old name.txt").exists()
    assert (root / "ignored.log").exists() and (root / ".ralph" / "ralph.db").exists()
    # the patch applies back onto the base
    git(root, "apply", "--index", str(patch))
    assert (root / "keep.txt").read_text() == "ruined\n"


def test_settle_aborts_a_half_done_merge_and_drops_a_stale_index_lock(root: Path):
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    git(root, "checkout", "-qb", "other")
    (root / "keep.txt").write_text("other\n")
    git(root, "commit", "-qam", "other")
    git(root, "checkout", "-q", "main")
    (root / "keep.txt").write_text("main\n")
    git(root, "commit", "-qam", "main")
    assert subprocess.run(["git", "merge", "other"], cwd=root, capture_output=True).returncode
    assert (root / ".git" / "MERGE_HEAD").exists()
    (root / ".git" / "index.lock").write_text("")

    g.settle()

    assert not (root / ".git" / "MERGE_HEAD").exists()
    assert not (root / ".git" / "index.lock").exists()
    assert git(root, "status", "--porcelain") == ""


def test_commits_work_without_a_configured_identity(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "none"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("EMAIL", raising=False)
    for var in ("GIT_AUTHOR_EMAIL", "GIT_AUTHOR_NAME", "GIT_COMMITTER_EMAIL", "GIT_COMMITTER_NAME"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "bare-identity"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "a.txt").write_text("a\n")
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    g.stage_all()

    sha = g.commit_tree(g.write_tree(), [], "First")

    assert git(root, "log", "--format=%an <%ae>", sha) == "ralph <ralph@localhost>"


def test_a_configured_identity_is_used_not_the_fallback(root: Path):
    g = Git(root, git_env(root, ensure_ralph_dir(root)))
    sha = g.commit_tree(g.tree_of("HEAD"), [g.rev("HEAD") or ""], "x")
    assert git(root, "log", "-1", "--format=%an", sha) == "Test"


def test_repo_root_finds_the_top_and_refuses_outside_a_repository(root: Path, tmp_path: Path):
    (root / "sub").mkdir()
    assert repo_root(root / "sub") == root
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(WorkspaceError, match="not inside a git repository"):
        repo_root(outside)


def test_workspaces_only_do_git_and_never_import_the_store():
    """The caller hands a workspace its `.ralph/` folder; no workspace module reaches into
    ralph.store (or the worker and runner that use it)."""
    import ast

    folder = Path(__file__).resolve().parents[1] / "ralph" / "workspace"
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad = ("ralph.store", "ralph.worker", "ralph.runner")
            found += [f"{path.name}: {n}" for n in names if n.startswith(bad)]
    assert found == []
