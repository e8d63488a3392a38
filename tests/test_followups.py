"""Follow-up tasks an agent files (`ralph add --discovered-from`): the link is stored, shown and
exported; unknown ids and floods are refused with one line; and a real agent inside a real
`ralph run` files two that the same run then does."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ralph import errors, open_store
from ralph.store.base import SQLStore
from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]


def test_the_store_keeps_the_link_and_refuses_unknown_sources(store: SQLStore):
    root = store.add("Root", id="R")
    found = store.add("Found it", discovered_from="R")
    assert found.discovered_from == "R"
    assert store.get(found.id).discovered_from == "R"
    assert store.get(root.id).discovered_from is None
    with pytest.raises(errors.TaskNotFoundError, match="nope"):
        store.add("Orphan", discovered_from="nope")
    [a, b] = store.add_many(
        [{"id": "S", "title": "Source"}, {"title": "From the batch", "discovered_from": "S"}]
    )
    assert store.get(b.id).discovered_from == "S"


def test_the_cap_counts_stored_follow_ups_and_refuses_beyond_it(store: SQLStore):
    store.add("Root", id="R")
    for n in range(2):
        store.add(f"F{n}", discovered_from="R", max_discovered=2)
    with pytest.raises(
        errors.UsageError, match=r"R already has 2 follow-up tasks \(max_discovered = 2\)"
    ):
        store.add("One too many", discovered_from="R", max_discovered=2)
    with pytest.raises(errors.UsageError, match="max_discovered"):
        store.add_many(
            [{"title": "x", "discovered_from": "R"}, {"title": "y", "discovered_from": "R"}],
            max_discovered=3,
        )
    assert len(store.list()) == 3  # nothing of the refused batch was written
    store.add("Without a cap", discovered_from="R")  # the cap is the caller's (the CLI's)


ADDER = """
import sys, time
from pathlib import Path
from ralph import errors, open_store
store = open_store(sys.argv[1])
store.list()  # connected before the start
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.002)
try:
    store.add("Follow-up", discovered_from="R", max_discovered=3)
    print("added")
except errors.UsageError:
    print("refused")
"""


def test_concurrent_adds_from_eight_processes_cannot_pass_the_cap(
    store: SQLStore, store_url: str, tmp_path: Path
):
    """Eight agents file a follow-up of one task at the same moment; exactly the cap get in
    (the count and the insert are one transaction that holds the source task's row)."""
    store.add("Root", id="R")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ADDER, store_url, str(go)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    assert all(p.stdout and p.stdout.readline() == "ready\n" for p in procs)
    go.touch()
    results = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert results == ["added"] * 3 + ["refused"] * 5
    assert sum(t.discovered_from == "R" for t in store.list()) == 3


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "repo"
    root.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "Test"],
        ["config", "user.email", "test@example.invalid"],
    ):
        subprocess.run(["git", "-C", str(root), *args], check=True)
    (root / "README.md").write_text("hello\n")
    subprocess.run(["git", "-C", str(root), "add", "README.md"], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-q", "-m", "start"], check=True)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env["HOME"] = str(tmp_path / "home")
    return root, env


def ralph(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_ralph(*args, cwd=root, env=env, timeout=120)


def test_cli_add_discovered_from_is_shown_exported_and_capped_by_the_config(project):
    root, env = project
    (root / "ralph.toml").write_text("max_discovered = 1\n")
    assert ralph(root, env, "add", "Root", "--id", "R").returncode == 0
    assert ralph(root, env, "add", "Found", "--id", "F", "--discovered-from", "R").returncode == 0
    refused = ralph(root, env, "add", "Again", "--discovered-from", "R")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: R already has 1 follow-up task (max_discovered = 1)")
    assert refused.stderr.count("\n") == 1
    unknown = ralph(root, env, "add", "Lost", "--discovered-from", "rl-nothere")
    assert (unknown.returncode, unknown.stderr.count("\n")) == (3, 1)
    assert "rl-nothere" in unknown.stderr
    assert "found in:   R" in ralph(root, env, "show", "F").stdout
    assert "(found in R)" in ralph(root, env, "list", "--tree").stdout
    tree = json.loads(ralph(root, env, "dep", "tree", "R", "--json").stdout)
    assert [n["id"] for n in tree["follow_ups"]] == ["F"]
    assert "follow-ups its agent filed" in ralph(root, env, "dep", "tree", "R").stdout
    exported = ralph(root, env, "export").stdout
    assert json.loads(exported.splitlines()[1])["discovered_from"] == "R"
    assert "discovered_from" not in json.loads(exported.splitlines()[0])
    # The export reads back into another store, link included, through stdin.
    other = root.parent / "other.db"
    back = subprocess.run(
        [*RALPH, "--db", str(other), "import", "-", "--apply"],
        cwd=root,
        env=env,
        input=exported,
        capture_output=True,
        text=True,
    )
    assert back.returncode == 0, back.stderr
    assert "Imported 2 tasks from stdin" in back.stdout
    with open_store(other) as store:
        assert store.get("F").discovered_from == "R"


def test_an_agent_files_two_follow_ups_that_run_later_in_the_same_run(project):
    root, env = project
    assert ralph(root, env, "add", "Build the parser", "--id", "ROOT").returncode == 0
    cmd = shlex.join([sys.executable, str(AGENTS / "files_followups.py"), "2"])
    result = ralph(root, env, "run", "--agent-cmd", cmd, "--json", "-q")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["done"] == 3
    with open_store(root / ".ralph" / "ralph.db") as store:
        tasks = {t.id: t for t in store.list()}
    follow_ups = [t for t in tasks.values() if t.discovered_from == "ROOT"]
    assert len(follow_ups) == 2 and all(t.status == "done" for t in follow_ups)
    assert sorted(p.name for p in (root / "done").iterdir()) == sorted(f"{t}.txt" for t in tasks)
