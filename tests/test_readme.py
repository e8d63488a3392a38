"""The README works literally: every ```bash block runs, as written and in order, in one fresh
git repository, the way a newcomer follows it top to bottom; each must exit 0.

A block that cannot run here (it needs real credentials, a PostgreSQL server or other hosts)
carries a visible `<!-- not run: why -->` line right before it. The agent is ralph's demo agent:
`--agent demo` as such, and a `claude` on PATH that is the demo agent, so the README can show the
commands people really type (`--agent claude`) and still run offline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from ralph.config import parse_settings

# The blocks run in order in one repository (`world`), each building on the one before: under
# pytest-xdist the module stays on one worker (conftest.TOGETHER) and starts first.
pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<why>\S.*?)\s*-->$")
MAX_NOT_RUN = 13  # the few that need credentials, servers or other machines; keep it that way


@dataclass
class Block:
    line: int
    lang: str
    text: str
    not_run: str | None


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    n = 0
    while n < len(lines):
        match = FENCE.match(lines[n])
        if not match or not match.group(1):
            n += 1
            continue
        start, body = n + 1, []
        n += 1
        while not lines[n].startswith("```"):
            body.append(lines[n])
            n += 1
        before = next((lines[k] for k in range(start - 2, -1, -1) if lines[k].strip()), "")
        marker = NOT_RUN.match(before.strip())
        blocks.append(
            Block(start, match.group(1), "\n".join(body) + "\n", marker["why"] if marker else None)
        )
        n += 1
    return blocks


SHELL = [b for b in readme_blocks() if b.lang in ("bash", "sh", "shell", "console")]
RUN = [b for b in SHELL if b.not_run is None]


def test_shell_blocks_are_bash_and_few_are_not_run():
    assert SHELL, "the README has no command blocks?"
    assert all(b.lang == "bash" for b in SHELL), [b.line for b in SHELL if b.lang != "bash"]
    assert len(SHELL) - len(RUN) <= MAX_NOT_RUN
    assert len(RUN) >= 8


def test_toml_blocks_are_valid_settings():
    for block in (b for b in readme_blocks() if b.lang == "toml"):
        parse_settings(tomllib.loads(block.text), source=f"README.md line {block.line}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh repository with one commit, a clean environment, and a `claude` that is the
    demo agent."""
    base = tmp_path_factory.mktemp("readme")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ralph.demo_agent\n')
    claude.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
    env["HOME"] = str(base / "home")
    env["NO_COLOR"] = "1"
    env["ANTHROPIC_API_KEY"] = "readme-demo"  # the `claude` here is the demo agent: no login
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env["PATH"]])
    repo = base / "my-repo"
    repo.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.name", "Newcomer"],
        ["config", "user.email", "newcomer@example.invalid"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    (repo / "README.md").write_text("# my project\n")
    subprocess.run(["git", "-C", str(repo), "add", "README.md"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "Start"], check=True)
    return repo, env


@pytest.mark.parametrize("block", RUN, ids=[f"line{b.line}" for b in RUN])
def test_readme_block_runs(block: Block, world: tuple[Path, dict[str, str]]):
    repo, env = world
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block.text],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"README.md line {block.line} exited {result.returncode}:\n{block.text}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


def test_the_scripted_agent_example_got_the_task_id(world: tuple[Path, dict[str, str]]):
    """Runs after the blocks: the quoting example committed f_<task id>.txt, not f_.txt."""
    repo, _ = world
    files = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "f_*.txt"], capture_output=True, text=True
    ).stdout.split()
    assert files and all(re.fullmatch(r"f_[\w.:-]+\.txt", f) for f in files), files
