"""The RALPH memory and prd.json sync through a real `ralph run`: each task's commit carries its
progress entry and its story's `passes: true`, and the next fresh agent's prompt holds what the
previous one learned."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from gitutil import git, init_repo

from tests.support.cli import ralph as run_ralph

AGENTS = Path(__file__).parent / "agents"
PRD = {
    "project": "greeter",
    "userStories": [
        {"id": "US-001", "title": "Add greet()", "priority": 1, "passes": False, "notes": ""},
        {"id": "US-002", "title": "Test greet()", "priority": 2, "passes": False, "notes": ""},
    ],
}


def ralph(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_ralph(*args, cwd=repo, env=env, timeout=120)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_prd_run_sets_passes_and_carries_learnings_to_the_next_agent(
    tmp_path: Path, workers: str
) -> None:
    repo = init_repo(tmp_path / "repo", {"prd.json": json.dumps(PRD, indent=2) + "\n"})
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env.update(HOME=str(tmp_path / "home"), LEARNER_PROMPTS=str(prompts))
    assert ralph(repo, env, "import", "prd.json", "--apply").returncode == 0
    git(repo, "add", "ralph.toml")
    git(repo, "commit", "-q", "-m", "ralph config")
    agent = shlex.join([sys.executable, str(AGENTS / "learner.py")])
    done = ralph(repo, env, "run", "--workers", workers, "--no-live", "--agent-cmd", agent)
    assert done.returncode == 0, done.stderr

    stories = json.loads((repo / "prd.json").read_text())["userStories"]
    assert [s["passes"] for s in stories] == [True, True]
    assert all("use the out/ folder" in s["notes"] for s in stories)
    log = git(repo, "log", "--format=%H %(trailers:key=Task,valueonly)", "main").splitlines()
    tasks = [line.split()[1] for line in log if len(line.split()) == 2]
    assert len(tasks) == 2
    for sha, task in (line.split() for line in log if len(line.split()) == 2):
        files = git(repo, "show", "--name-only", "--format=", sha).split()
        assert sorted(files) == sorted([f"out/{task}.txt", "prd.json", "progress.md"])
    progress = (repo / "progress.md").read_text()
    assert progress.count("learned while doing") == 2
    # priority 1 runs first; with one worker the second agent saw the first one's learning
    first, second = sorted(tasks, key=lambda t: t.endswith("002"))
    if workers == "1":
        assert f"learned while doing {first}" in (prompts / f"{second}.md").read_text()
    assert git(repo, "status", "--porcelain") == ""
