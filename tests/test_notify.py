"""Notifications through apprise to a real HTTP receiver on loopback (`json://`), sent by real
`ralph run` processes: what is sent, and that a receiver that fails or hangs changes nothing
else about the run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ralph.errors import ConfigError
from ralph.notify import NotifySettings, parse_notify, resolve, send_test
from ralph.store import open_store
from tests.gitutil import git, init_repo
from tests.support.cli import ralph as run_ralph
from tests.support.receiver import Receiver

AGENTS = Path(__file__).parent / "agents"
RALPH = [sys.executable, "-m", "ralph"]
GUARD = 120  # seconds; only stops a broken run from hanging the suite


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env["HOME"] = str(tmp_path / "home")
    return env


def ralph(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_ralph(*args, cwd=root, env=env, timeout=GUARD)


def project(tmp_path: Path, env: dict[str, str], notify: str, *tasks: str) -> Path:
    """A repository whose committed ralph.toml has `notify`, and tasks (first runs first)."""
    root = init_repo(tmp_path / "repo", {"README.md": "hello\n", "ralph.toml": notify})
    for n, task in enumerate(tasks):
        added = ralph(root, env, "add", f"Task {task}", "--id", task, "--priority", str(9 - n))
        assert added.returncode == 0, added.stderr
    return root


def agent(plan: dict[str, list[str]], env: dict[str, str]) -> str:
    env["PER_TASK"] = json.dumps(plan)
    return shlex.join([sys.executable, str(AGENTS / "per_task.py")])


def landed_once(root: Path, task: str) -> None:
    bodies = git(root, "log", "--format=%(trailers:key=Task,valueonly)", "main").split()
    assert bodies.count(task) == 1, bodies
    git(root, "fsck", "--no-progress", "--strict")


def test_a_failed_task_then_an_auth_stop_send_task_failed_auth_stopped_and_run_finished(
    tmp_path: Path, env: dict[str, str]
):
    with Receiver() as receiver:
        config = f'[notify]\nurls = ["{receiver.url()}"]\n'
        root = project(tmp_path, env, config, "F", "L")
        cmd = agent({"F": ["fail.py"], "L": ["claude_stream.py", "auth"]}, env)
        result = ralph(root, env, "run", "--agent-cmd", cmd, "--max-attempts", "1")
        assert result.returncode == 10, result.stderr
        got = receiver.wait_for(3)
    titles = [m["title"] for m in got]
    assert len(got) == 3, titles
    failed, auth, finished = got
    assert failed["title"] == "ralph: task F failed"
    assert "tests are red" in failed["message"] and "ralph retry F" in failed["message"]
    assert auth["title"].startswith("ralph: agent ") and "could not authenticate" in auth["title"]
    assert "ralph run" in auth["message"]
    assert finished["title"] == "ralph: run finished: 0 done, 1 failed"
    assert "0 done, 1 failed, 0 to retry, 2 agent launches" in finished["message"]
    assert "cost unknown" in finished["message"]
    assert all(m["_path"] == "/hook" for m in got)


def test_the_events_filter_sends_only_the_events_named_and_the_run_writes_its_report(
    tmp_path: Path, env: dict[str, str]
):
    with Receiver() as receiver:
        config = (
            f'[notify]\nurls = ["{receiver.url()}"]\nevents = ["run_finished"]\n'
            "[report]\nwrite = true\n"
        )
        root = project(tmp_path, env, config, "F", "G")
        cmd = agent({"F": ["fail.py"]}, env)
        result = ralph(root, env, "run", "--agent-cmd", cmd, "--max-attempts", "1")
        assert result.returncode == 13, result.stderr
        got = receiver.wait_for(1)
    assert [m["title"] for m in got] == ["ralph: run finished: 1 done, 1 failed"]
    landed_once(root, "G")
    (written,) = (root / ".ralph" / "reports").glob("run-*.html")
    assert f"Report: {written}" in got[0]["message"]
    page = written.read_text()
    assert "<svg" in page and ">G<" in page and ">F<" in page


def test_a_receiver_answering_500_twice_gets_the_message_on_the_third_send(
    tmp_path: Path, env: dict[str, str]
):
    with Receiver(fail_first=2) as receiver:
        env["RALPH_NOTIFY_URLS"] = receiver.url("env-hook")
        root = project(tmp_path, env, "", "A")
        result = ralph(root, env, "run", "--agent-cmd", agent({}, env))
        assert result.returncode == 0, result.stderr
        (finished,) = receiver.wait_for(1)
        assert len(receiver.requests) == 3
    assert finished["title"] == "ralph: run finished: 1 done, 0 failed"
    assert finished["_path"] == "/env-hook"
    landed_once(root, "A")
    with open_store(root / ".ralph" / "ralph.db") as store:
        assert store.events(kind="notify_failed") == []


def test_a_receiver_that_always_answers_500_is_written_down_and_the_run_goes_on(
    tmp_path: Path, env: dict[str, str]
):
    with Receiver(always_fail=True) as receiver:
        config = f'[notify]\nurls = ["{receiver.url()}"]\nretries = 2\n'
        root = project(tmp_path, env, config, "F", "A")
        cmd = agent({"F": ["fail.py"]}, env)
        result = ralph(root, env, "run", "--agent-cmd", cmd, "--max-attempts", "1")
        assert result.returncode == 13, result.stderr
    landed_once(root, "A")
    with open_store(root / ".ralph" / "ralph.db") as store:
        failed = store.events(kind="notify_failed")
        assert [t.status for t in store.list()] == ["failed", "done"]
    assert sorted(e.data["notify_event"] for e in failed) == ["run_finished", "task_failed"]
    assert all(e.data["url"] == f"json://127.0.0.1:{receiver.port}" for e in failed)
    assert len(receiver.requests) == 4  # two messages, two sends each


def test_a_receiver_that_hangs_for_60s_delays_the_run_by_one_send_timeout_at_most(
    tmp_path: Path, env: dict[str, str]
):
    with Receiver(hang_for=60) as receiver:
        config = f'[notify]\nurls = ["{receiver.url()}"]\ntimeout = "2s"\n'
        root = project(tmp_path, env, config, "F", "A")
        cmd = agent({"F": ["fail.py"]}, env)
        started = time.monotonic()
        result = ralph(root, env, "run", "--agent-cmd", cmd, "--max-attempts", "1")
        took = time.monotonic() - started
        assert result.returncode == 13, result.stderr
        assert receiver.wait_for(1, delivered=False)  # the first send reached it and hung
        assert receiver.delivered == []
        finished_sends = [r for r in receiver.requests if "run finished" in r.get("title", "")]
    # the run did not wait for the receiver (60 s), nor for the retries (3 sends of 2 s each):
    # it gave the queue one send timeout and left, so run_finished was sent at most once
    assert took < 60, took
    assert len(finished_sends) <= 1, finished_sends
    landed_once(root, "A")
    with open_store(root / ".ralph" / "ralph.db") as store:
        failed = store.events(kind="notify_failed")
        assert [t.status for t in store.list()] == ["failed", "done"]
    assert {e.data["notify_event"] for e in failed} == {"task_failed", "run_finished"}
    assert "notify: " in result.stderr


def test_notify_test_reports_each_url(tmp_path: Path, env: dict[str, str]):
    with Receiver() as good, Receiver(always_fail=True) as bad:
        config = f'[notify]\nurls = ["{good.url()}", "{bad.url()}"]\nretries = 1\n'
        root = project(tmp_path, env, config)
        result = ralph(root, env, "notify", "test", "--json")
        assert good.wait_for(1)[0]["title"] == "ralph: test notification"
    assert result.returncode == 14, result.stderr
    report = json.loads(result.stdout)
    assert [(r["url"], r["ok"]) for r in report] == [
        (f"json://127.0.0.1:{good.port}", True),
        (f"json://127.0.0.1:{bad.port}", False),
    ]


def test_notify_test_without_urls_says_how_to_configure(tmp_path: Path, env: dict[str, str]):
    root = project(tmp_path, env, "")
    result = ralph(root, env, "notify", "test")
    assert result.returncode == 8
    assert "RALPH_NOTIFY_URLS" in result.stderr and "Traceback" not in result.stderr


def test_notify_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="notify.events: unknown event 'nope'"):
        parse_notify({"urls": ["json://x"], "events": ["nope"]})
    with pytest.raises(ConfigError, match="unknown key 'notify.url'"):
        parse_notify({"url": "json://x"})
    found = resolve(
        {"urls": ["json://a"], "pause_after": "30s"},
        "t",
        {"RALPH_NOTIFY_URLS": "json://b, json://a"},
    )
    assert (found.urls, found.pause_after) == (["json://a", "json://b"], 30.0)
    assert send_test(NotifySettings(urls=["nosuchscheme://x"]))[0]["ok"] is False


def test_the_hot_commands_do_not_import_apprise_or_prometheus(tmp_path: Path, env: dict[str, str]):
    root = project(tmp_path, env, '[notify]\nurls = ["json://127.0.0.1:9/x"]\n', "A")
    for args in (["ready"], ["claim", "A", "w"], ["done", "A"], ["add", "x"]):
        probe = (
            "import sys, runpy; sys.argv = ['ralph', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('ralph', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "bad = [m for m in ('apprise', 'prometheus_client') if m in sys.modules]\n"
            "assert not bad, bad\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], cwd=root, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (args, done.stderr)


def test_the_breaker_and_the_budget_cap_each_send_their_message(
    tmp_path: Path, env: dict[str, str]
):
    with Receiver() as receiver:
        config = f'breaker = 1\n[notify]\nurls = ["{receiver.url()}"]\n'
        root = project(tmp_path / "breaker", env, config, "F", "G")
        cmd = agent({"F": ["fail.py"], "G": ["fail.py"]}, env)
        result = ralph(root, env, "run", "--agent-cmd", cmd, "--max-attempts", "1")
        assert result.returncode == 11, result.stderr
        tripped = [m["title"] for m in receiver.wait_for(3)]
    assert sorted(tripped[:2]) == [
        "ralph: task F failed",
        "ralph: too many failures in a row; the run stopped",
    ]
    assert tripped[2:] == ["ralph: run finished: 0 done, 1 failed"]
    with Receiver() as receiver:
        config = f'[notify]\nurls = ["{receiver.url()}"]\nevents = ["budget_reached"]\n'
        root = project(tmp_path / "budget", env, config, "A", "B")
        cmd = agent({"A": ["claude_stream.py", "ok"], "B": ["claude_stream.py", "ok"]}, env)
        result = ralph(root, env, "run", "--agent-cmd", cmd, "--max-cost", "0.01")
        assert result.returncode == 0, result.stderr
        (budget,) = receiver.wait_for(1)
    assert budget["title"] == "ralph: the budget cap ended the run"
    assert "--max-cost $0.01 reached (spent $0.0123)" in budget["message"]
    landed_once(root, "A")


def test_a_long_pause_and_a_lost_worker_are_sent_and_a_short_pause_is_not(store, clock):
    from ralph.control import RunControl
    from ralph.notify import Notifier
    from ralph.sweeper import sweep

    with Receiver() as receiver:
        control = RunControl(log=lambda line: None)
        settings = NotifySettings(urls=[receiver.url()], pause_after=600.0)
        control.notifier = Notifier(settings, record=store.note_event)
        control.pause_until(time.time() + 60, "rate limited: short")
        control.pause_until(time.time() + 3600, "rate limited: usage limit until the hour")
        task = store.add("Held by a worker that dies")
        store.register_worker("w-dead", heartbeat_interval=1.0)
        store.claim(task.id, "w-dead", lease=600)
        clock.advance(10)  # three missed heartbeats and more, by the store's clock
        control.swept(sweep(store))
        paused, lost = receiver.wait_for(2)
        control.notifier.close()
    assert paused["title"].startswith("ralph: every worker paused until ")
    assert "usage limit until the hour" in paused["message"]
    assert lost["title"] == "ralph: worker w-dead stopped answering"
    assert task.id in lost["message"]
    assert len(receiver.requests) == 2  # the 60 s pause sent nothing
    # a failed send is written through the store, on every backend
    store.note_event("notify_failed", notify_event="paused", url="json://h", error="HTTP 500")
    (failed,) = store.events(kind="notify_failed")
    assert (failed.task_id, failed.data["error"]) == (None, "HTTP 500")
