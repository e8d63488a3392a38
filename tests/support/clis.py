"""How the tests point the real agent CLIs at the loopback model servers, and run `ralph`."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.cli import ralph as run_ralph

# The `ralph run` shapes each real CLI's end-to-end test runs (workers, sandbox): one worker in
# the checkout without the sandbox (a plain `ralph run`), two in worktrees in the sandbox. Two
# workers without the sandbox run for codex only (a native binary, 0.1 s a start): for the node
# CLIs (1-2 CPU-s a start) that third shape cost ~20 CPU-s of the suite for what the fake agents
# and codex cover.
RUN_SHAPES = [(1, "off"), (2, "on")]
HANG_GUARD = 180  # seconds; only stops a broken run from hanging the suite
KEY_VAR = "MOCK_OPENAI_KEY"  # the codex provider's env_key
MODEL = "mock-model"  # a model codex has no metadata for: it then offers exec_command
# every variable through which a developer's own credentials or endpoints could leak in
SCRUBBED = (
    "ANTHROPIC_",
    "CLAUDE_",
    "OPENAI_",
    "CODEX_",
    "GEMINI_",
    "GOOGLE_",
    "AMP_",
    "RALPH_",
    "COPILOT_",
    "GH_TOKEN",
    "GITHUB_TOKEN",
    "QWEN_",
    "DASHSCOPE_",
    "OPENCODE_",
)


def require(cli: str) -> str:
    """The CLI's path; skip without it, except under CI=true where it must be installed."""
    path = shutil.which(cli)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{cli} is not on PATH; .ci/run installs it")
        pytest.skip(f"{cli} is not installed")
    return path


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without agent credentials, HOME at `home`, a git identity."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED) or k == "RALPH_SANDBOX"
    }
    env.update(HOME=str(home), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", **extra)  # fmt: skip
    return env


_COPILOT_PACKAGE = Path(".cache", "copilot")


@functools.cache
def _unpacked_copilot() -> Path | None:
    """A HOME in which copilot has unpacked itself once for this test process (or None)."""
    home = Path(tempfile.mkdtemp(prefix="copilot-home-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    subprocess.run(["copilot", "--version"], env={**os.environ, "HOME": str(home)},
                   capture_output=True, timeout=HANG_GUARD, check=False)  # fmt: skip
    return home if (home / _COPILOT_PACKAGE).is_dir() else None


def warm_copilot_home(home: Path) -> Path:
    """Give `home` the package copilot unpacks into ~/.cache/copilot at its first start in a
    HOME (235 MB, ~0.9 s of CPU), hard-linked from one unpacked per test process: a user's
    HOME has it after their first run, and each test's fresh HOME would unpack it again."""
    home.mkdir(parents=True, exist_ok=True)
    template = _unpacked_copilot()
    if template is not None and not (home / _COPILOT_PACKAGE).exists():
        (home / _COPILOT_PACKAGE).parent.mkdir(parents=True, exist_ok=True)
        # cp -al: links, not copies (same file system); if that fails copilot unpacks itself
        source, target = template / _COPILOT_PACKAGE, home / _COPILOT_PACKAGE
        subprocess.run(["cp", "-al", str(source), str(target)], capture_output=True, check=False)
    return home


def codex_args(url: str, key_var: str = KEY_VAR) -> list[str]:
    """`[agents.codex] args` for a custom provider speaking the Responses API at `url`."""
    return [
        "-c", "model_provider=mock",
        "-c", 'model_providers.mock.name="mock"',
        "-c", f'model_providers.mock.base_url="{url}/v1"',
        "-c", f"model_providers.mock.env_key={key_var}",
        "-c", 'model_providers.mock.wire_api="responses"',
    ]  # fmt: skip


def gemini_home(home: Path, auth: str | None = "gemini-api-key") -> Path:
    """A HOME whose ~/.gemini/settings.json selects `auth` (None: no settings at all)."""
    home.mkdir(parents=True, exist_ok=True)
    if auth is not None:
        (home / ".gemini").mkdir(exist_ok=True)
        settings = {"security": {"auth": {"selectedType": auth}}}
        (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    return home


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README.md").write_text("scratch\n")
    subprocess.run(["git", "-C", str(path), "add", "README.md"], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@x",
                    "commit", "-qm", "init"], check=True)  # fmt: skip
    return path


def ralph(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_ralph(*args, cwd=repo, env=env, timeout=HANG_GUARD)


def add_task(repo: Path, env: dict[str, str], title: str, description: str) -> str:
    out = ralph(repo, env, "add", title, "-d", description, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["id"]


def task_commits(repo: Path) -> dict[str, int]:
    """Task id -> number of commits on main carrying its `Task:` trailer."""
    log = subprocess.run(["git", "-C", str(repo), "log", "main", "--format=%B%x00"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    counts: dict[str, int] = {}
    for message in log.split("\0"):
        for line in message.splitlines():
            if line.startswith("Task: "):
                counts[line[6:].strip()] = counts.get(line[6:].strip(), 0) + 1
    return counts


def check_each_task_done_once(
    repo: Path, tasks: list[str], tokens: tuple[int, int], cost: float
) -> None:
    """One commit per task on main, each task's file written, every task done, and each
    successful attempt with the tokens the scripted server reported and the cost from them."""
    from ralph.store import open_store

    assert task_commits(repo) == {t: 1 for t in tasks}
    for n in range(len(tasks)):
        assert (repo / f"f{n}.txt").read_text() == f"file {n}"
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert {store.get(t).status for t in tasks} == {"done"}
        done = [a for a in store.attempts() if a.outcome == "success"]
        assert len(done) == len(tasks)
        assert all((a.input_tokens, a.output_tokens) == tokens for a in done)
        assert all(a.cost_usd == pytest.approx(cost) for a in done)


def check_policy(repo: Path, env: dict[str, str], task: str, sandbox: str) -> None:
    """The policy `ralph show` records for the task's attempt: bwrap with the allow-list
    gate when the sandbox was on, "unsandboxed" when off."""
    shown = json.loads(ralph(repo, env, "show", task, "--json").stdout)
    if sandbox == "on":
        assert shown["sandbox"].startswith("sandbox: bwrap, network=allow"), shown["sandbox"]
    else:
        assert shown["sandbox"] == "unsandboxed"
