"""Fallback agents with the real CLIs: `claude` against a scripted Anthropic server that rejects
it with a usage limit (the `anthropic-ratelimit-unified-*` headers claude reads with an OAuth
token: it prints a `rate_limit_event` with `resetsAt`), or with 401, and the real `codex`
against a scripted Responses server that works. Skipped without both CLIs, except in CI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ralph.store import open_store
from tests.support.clis import (
    KEY_VAR,
    MODEL,
    add_task,
    check_policy,
    clean_env,
    codex_args,
    git_repo,
    ralph,
    require,
    task_commits,
    toml_list,
)
from tests.support.model_server import ModelServer, ResponsesServer

pytestmark = [pytest.mark.claude, pytest.mark.codex]
HOUR = 3600


@pytest.fixture(scope="module", autouse=True)
def clis_installed() -> None:
    require("claude")
    require("codex")


def config(tmp_path: Path, codex_url: str, fallback_after: str = "2m") -> Path:
    path = tmp_path / "ralph.toml"
    path.write_text(
        f'[run]\nagents = ["claude", "codex"]\nfallback_after = "{fallback_after}"\n'
        f'[agents.codex]\nmodel = "{MODEL}"\nargs = {toml_list(codex_args(codex_url))}\n'
        f'[prices."{MODEL}"]\ninput = 2.0\noutput = 8.0\n'
    )
    return path


def env_for(tmp_path: Path, claude: ModelServer, **extra: str) -> dict[str, str]:
    """claude on `claude` with an OAuth token (it acts on the unified limit headers only
    then), codex's provider key set."""
    return clean_env(
        tmp_path / "home",
        ANTHROPIC_BASE_URL=claude.url,
        **{KEY_VAR: "test-key"},
        **extra,
    )


def switches(repo: Path) -> list[dict]:
    with open_store(repo / ".ralph" / "ralph.db") as store:
        return [e.data for e in store.events(kind="agent_switched")]


def launches(repo: Path) -> list[tuple[str, str, str | None]]:
    with open_store(repo / ".ralph" / "ralph.db") as store:
        return [
            (a.task_id, a.agent, a.outcome) for a in sorted(store.attempts(), key=lambda a: a.id)
        ]


def fsck_clean(repo: Path) -> bool:
    return (
        subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], capture_output=True).returncode
        == 0
    )


@pytest.mark.parametrize("sandbox", ["off", "on"])
def test_claude_over_its_usage_limit_hands_the_tasks_to_codex(tmp_path, sandbox):
    """With the sandbox on, each agent runs under its own allow-list (its own API host)."""
    repo = git_repo(tmp_path / "repo")
    reset = int(time.time()) + HOUR
    with (
        ModelServer("429", cwd=repo, unified_reset=reset) as claude,
        ResponsesServer("write") as codex,
    ):
        env = env_for(tmp_path, claude, CLAUDE_CODE_OAUTH_TOKEN="test-oauth")
        env["RALPH_SANDBOX"] = sandbox
        tasks = [add_task(repo, env, f"Add f{n}", f"WRITE f{n}.txt: file {n}") for n in range(2)]
        out = ralph(repo, env, "run", "--config", str(config(tmp_path, codex.url)), "--json", "-q")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["agents"] == {"claude": 1, "codex": 2}
    (switch,) = switches(repo)
    assert (switch["from"], switch["to"], switch["reason"]) == ("claude", "codex", "rate_limited")
    assert switch["until"] == reset
    ran = launches(repo)
    assert [(agent, outcome) for _, agent, outcome in ran] == [
        ("claude", "rate_limited"),
        ("codex", "success"),
        ("codex", "success"),
    ]
    assert task_commits(repo) == {t: 1 for t in tasks}
    log = subprocess.run(["git", "-C", str(repo), "log", "-2", "--format=%B"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert log.count("Agent: codex") == 2 and "Agent: claude" not in log
    for n in range(2):
        assert (repo / f"f{n}.txt").read_text() == f"file {n}"
    shown = json.loads(ralph(repo, env, "show", ran[0][0], "--json").stdout)
    assert [r["agent"] for r in shown["runs"]] == ["claude", "codex"]
    check_policy(repo, env, ran[1][0], sandbox)
    assert fsck_clean(repo)


def test_after_claude_s_reset_the_next_task_goes_back_to_claude(tmp_path):
    repo = git_repo(tmp_path / "repo")
    reset = int(time.time()) + 6  # fallback_after 0: even this short a limit switches
    with (
        ModelServer("429", cwd=repo, unified_reset=reset) as claude,
        ResponsesServer("write") as codex,
    ):
        env = env_for(tmp_path, claude, CLAUDE_CODE_OAUTH_TOKEN="test-oauth")
        first = add_task(repo, env, "Add f0", "WRITE f0.txt: file 0")
        path = config(tmp_path, codex.url, fallback_after="0s")
        run = subprocess.Popen(
            [sys.executable, "-m", "ralph", "run", "--config", str(path), "--watch",
             "--max-tasks", "2", "-q"],
            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            with open_store(repo / ".ralph" / "ralph.db") as store:
                deadline = time.monotonic() + 180
                while store.get(first).status != "done":
                    assert time.monotonic() < deadline and run.poll() is None
                    time.sleep(0.1)
            claude.mode = "write"  # its window is over
            while time.time() <= reset:  # and its reset time has passed
                time.sleep(0.1)
            second = add_task(repo, env, "Add f1", "WRITE f1.txt: file 1")
            _, err = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                run.kill()
    assert run.returncode == 0, err
    assert [(s["from"], s["to"], s["reason"]) for s in switches(repo)] == [
        ("claude", "codex", "rate_limited"),
        ("codex", "claude", "reset_passed"),
    ]
    assert launches(repo) == [
        (first, "claude", "rate_limited"),
        (first, "codex", "success"),
        (second, "claude", "success"),
    ]
    assert task_commits(repo) == {first: 1, second: 1}
    assert (repo / "f1.txt").read_text() == "file 1"
    assert fsck_clean(repo)


def test_claude_failing_auth_hands_over_to_codex_and_the_run_exits_0(tmp_path):
    repo = git_repo(tmp_path / "repo")
    with ModelServer("401", cwd=repo) as claude, ResponsesServer("write") as codex:
        env = env_for(tmp_path, claude, ANTHROPIC_API_KEY="wrong-key")
        tasks = [add_task(repo, env, f"Add f{n}", f"WRITE f{n}.txt: file {n}") for n in range(2)]
        out = ralph(repo, env, "run", "--config", str(config(tmp_path, codex.url)), "-q")
        claude_calls = len(claude.message_requests)
    assert out.returncode == 0, out.stderr
    assert [(s["from"], s["to"], s["reason"]) for s in switches(repo)] == [
        ("claude", "codex", "auth_failed")
    ]
    assert [agent for _, agent, _ in launches(repo)] == ["claude", "codex", "codex"]
    assert claude_calls <= 3  # its first api_retry was enough; never launched again
    assert task_commits(repo) == {t: 1 for t in tasks}
    assert fsck_clean(repo)


def test_with_claude_and_codex_both_limited_the_run_pauses_until_the_earliest_reset(tmp_path):
    repo = git_repo(tmp_path / "repo")
    reset = int(time.time()) + HOUR
    with (
        ModelServer("429", cwd=repo, unified_reset=reset) as claude,
        ResponsesServer("429", retry_after=20) as codex,
    ):
        env = env_for(tmp_path, claude, CLAUDE_CODE_OAUTH_TOKEN="test-oauth")
        task = add_task(repo, env, "Add f0", "WRITE f0.txt: file 0")
        path = config(tmp_path, codex.url, fallback_after="0s")  # codex's limit is short
        run = subprocess.Popen(
            [sys.executable, "-m", "ralph", "run", "--config", str(path)],
            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        said: list[str] = []
        try:
            for line in run.stderr:
                said.append(line)
                if "pausing every worker until" in line:
                    break
            run.send_signal(signal.SIGTERM)
            run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
    paused = said[-1]
    assert "pausing every worker until" in paused, said
    until = time.mktime(time.strptime(time.strftime("%Y-%m-%d ") + paused.split("until ")[1][:8],
                                      "%Y-%m-%d %H:%M:%S"))  # fmt: skip
    assert until < reset - HOUR / 2  # codex's reset, not claude's hour
    assert run.returncode in (0, 12)  # 12: the signal came before the last attempt was settled
    assert [(s["from"], s["to"], s["reason"]) for s in switches(repo)] == [
        ("claude", "codex", "rate_limited")
    ]
    assert [(agent, outcome) for _, agent, outcome in launches(repo)] == [
        ("claude", "rate_limited"),
        ("codex", "rate_limited"),
    ]
    with open_store(repo / ".ralph" / "ralph.db") as store:
        assert store.get(task).attempts == 0 and store.get(task).status == "open"
    assert task_commits(repo) == {}


def test_claude_without_credentials_at_the_start_leaves_the_run_to_codex(tmp_path):
    repo = git_repo(tmp_path / "repo")
    with ModelServer("write", cwd=repo) as claude, ResponsesServer("write") as codex:
        env = env_for(tmp_path, claude)  # no ANTHROPIC_API_KEY, no login
        task = add_task(repo, env, "Add f0", "WRITE f0.txt: file 0")
        out = ralph(repo, env, "run", "--config", str(config(tmp_path, codex.url)), "-q")
        claude_calls = len(claude.message_requests)
    assert out.returncode == 0, out.stderr
    assert [(s["from"], s["to"], s["reason"]) for s in switches(repo)] == [
        ("claude", "codex", "auth_failed")
    ]
    assert launches(repo) == [(task, "codex", "success")] and claude_calls == 0
    assert task_commits(repo) == {task: 1}
