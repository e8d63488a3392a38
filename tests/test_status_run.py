"""`ralph status`, `ralph stats` and `ralph logs` read while a real `ralph run` works, and after.

The agent is a real script that prints claude stream-json, then waits for the test to let it
finish, so "while it runs" is a state the test holds, not a moment it hopes to hit.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ralph import hostid
from tests.support.cli import ralph as run_ralph

RALPH = [sys.executable, "-m", "ralph"]
AGENT = r"""
import json, os, sys, time
from pathlib import Path

import pytest

sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
gate = Path(os.environ["GATE_DIR"])

def emit(obj):
    print(json.dumps(obj), flush=True)

emit({"type": "system", "subtype": "init", "session_id": "s-" + task, "model": "fake"})
emit({"type": "assistant", "message": {"content": [
    {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": task + ".txt"}}]}})
Path(task + ".txt").write_text("done\n")
(gate / (task + ".started")).write_text("")
deadline = time.time() + 300  # never outlive a failed test by long
while not (gate / (task + ".go")).exists() and time.time() < deadline:
    time.sleep(0.02)
emit({"type": "result", "subtype": "success", "is_error": False, "result": "Wrote it.",
      "session_id": "s-" + task, "num_turns": 2, "total_cost_usd": 0.25,
      "usage": {"input_tokens": 1000, "output_tokens": 100}})
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


def ralph_json(root: Path, env: dict[str, str], *args: str):
    done = run_ralph(*args, "--json", cwd=root, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120  # only so a broken run cannot hang the suite
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_status_stats_and_logs_while_a_real_run_works_and_after(tmp_path: Path):
    root, gate = tmp_path / "repo", tmp_path / "gate"
    root.mkdir()
    gate.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env.update(HOME=str(tmp_path / "home"), GATE_DIR=str(gate))
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test")
    git(root, "config", "user.email", "test@example.invalid")
    run_ralph("init", cwd=root, env=env, check=True)
    (root / "todo.md").write_text("- [ ] First\n- [ ] Second\n")
    run_ralph("import", "todo.md", "--chain", "--apply", cwd=root, env=env, check=True)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "Set up ralph")
    ids = [t["id"] for t in ralph_json(root, env, "list")]
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    cmd = shlex.join([sys.executable, str(agent)])
    proc = subprocess.Popen(
        [*RALPH, "run", "--agent-cmd", cmd, "--json", "-q", "--lease", "10m"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(gate / f"{ids[0]}.started", proc)
        status = ralph_json(root, env, "status")
        assert status["claimed"] == 1 and status["counts"]["open"] == 2
        (claim,) = status["claims"]
        assert claim["task_id"] == ids[0] and 0 < claim["lease_left_s"] <= 600
        assert [a["task_id"] for a in status["running"]] == [ids[0]]
        assert status["spend"]["total"]["cost_usd"] is None  # unknown while it runs, not $0
        running = ralph_json(root, env, "stats")
        assert (running["total"]["attempts"], running["total"]["running"]) == (1, 1)
        live_log = ralph_json(root, env, "logs", ids[0])
        assert live_log["result"] is None
        assert [t["kind"] for t in live_log["turns"]] == ["system", "tool"]

        follower = subprocess.Popen(
            [*RALPH, "logs", ids[0], "--follow", "--no-prompt"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        while "→ Write" not in (line := follower.stdout.readline()):  # printed while it runs
            assert line, follower.communicate()
        (gate / f"{ids[0]}.go").write_text("")
        rest, follow_err = follower.communicate(timeout=120)  # ends when the attempt ends
        assert follower.returncode == 0, follow_err
        assert "✓ Wrote it." in rest and "success" in rest
        wait_for(gate / f"{ids[1]}.started", proc)
        between = ralph_json(root, env, "status")
        assert between["counts"]["done"] == 1 and between["spend"]["today"]["cost_usd"] == 0.25
        (gate / f"{ids[1]}.go").write_text("")
        out, err = proc.communicate(timeout=120)
    finally:
        for task_id in ids:  # a failed assertion must not leave agents waiting on their gate
            (gate / f"{task_id}.go").write_text("")
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out)["done"] == 2
    after = ralph_json(root, env, "status")
    assert after["counts"]["done"] == 2 and after["claims"] == [] and after["running"] == []
    assert after["spend"]["total"] == {
        "attempts": 2,
        "launches": 2,
        "cost_usd": 0.5,
        "unknown_cost": 0,
        "input_tokens": 2000,
        "output_tokens": 200,
    }
    stats = ralph_json(root, env, "stats", "--by", "task")
    assert [(g["key"], g["succeeded"], g["cost_usd"]) for g in stats["groups"]] == sorted(
        [(ids[0], 1, 0.25), (ids[1], 1, 0.25)]
    )
    assert stats["total"]["success_rate"] == 1.0 and stats["total"]["cost_usd"] == 0.5
    log = ralph_json(root, env, "logs", ids[0])
    assert log["result"]["outcome"] == "success" and log["turns"][-1]["cost_usd"] == 0.25
    text = subprocess.run(
        [*RALPH, "logs", ids[1], "--no-prompt"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert f"→ Write {ids[1]}.txt" in text and "✓ Wrote it." in text and "cost $0.2500" in text
    assert git(root, "log", "--format=%s").splitlines()[:2] == ["Second", "First"]


AGENTS = Path(__file__).parent / "agents"


def wait_for_events(url: str, proc: subprocess.Popen, *wanted: tuple[str, str | None]) -> list:
    """Read the store's events until one of each (kind, task) in `wanted` is there."""
    from ralph.store import open_store

    deadline = time.monotonic() + 120  # only so a broken run cannot hang the suite
    with open_store(url) as store:
        while True:
            events = store.events()
            seen = {(e.kind, e.task_id) for e in events}
            if all(w in seen for w in wanted):
                return events
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{wanted} never all happened: {seen}"
            time.sleep(0.05)


def run_env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    return {**env, "HOME": str(tmp_path / "home"), "RALPH_DB": url}


def test_a_rate_limit_pause_shows_in_another_process_status_until_the_run_ends(
    tmp_path: Path, store_url: str
):
    from ralph.models import from_iso
    from tests.gitutil import init_repo

    root = init_repo(tmp_path / "repo", {"README.md": "hi\n"})
    env = run_env(tmp_path, store_url)
    for task in ("L", "M"):
        run_ralph("add", task, "--id", task, cwd=root, env=env, check=True)
    before = ralph_json(root, env, "status")
    assert before["pause"] is None and before["paused"] is None
    cmd = shlex.join([sys.executable, str(AGENTS / "retry_after.py"), "3600"])
    proc = subprocess.Popen(
        [*RALPH, "run", "--agent-cmd", cmd, "--worker", "w1", "-q"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The agent's 429 came back with its task, and the run recorded its pause.
        wait_for_events(store_url, proc, ("run_paused", None), ("released", "L"))
        status = ralph_json(root, env, "status")
        pause = status["pause"]
        assert pause is not None and status["paused"] is None  # not a `ralph pause`
        assert (pause["source"], pause["by"], pause["workers"]) == ("run", "w1", ["w1"])
        assert pause["host"] == hostid.HOST and "rate limited" in pause["reason"]
        assert from_iso(pause["until"]) - from_iso(pause["since"]) == pytest.approx(3600, abs=30)
        assert status["ready"] == 2  # ready, and held by the pause: the line below says why
        text = run_ralph("status", cwd=root, env=env).stdout
        assert f"PAUSED by w1 on {hostid.HOST}" in text and "rate limited" in text
        assert "idle (paused)" in text, text
        # `ralph resume` lifts what `ralph pause` set, not a run's own limit.
        resumed = run_ralph("resume", cwd=root, env=env)
        assert "Nothing was paused" in resumed.stdout
        assert ralph_json(root, env, "status")["pause"] == pause
        proc.terminate()
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert ralph_json(root, env, "status")["pause"] is None  # the run ended: so did its pause
    kinds = [e.kind for e in wait_for_events(store_url, proc, ("run_resumed", None))]
    assert kinds.count("run_paused") == 1 and kinds.count("run_resumed") == 1
    assert [t["attempts"] for t in ralph_json(root, env, "list")] == [0, 0]


def test_a_rate_limit_pause_record_ends_with_the_pause_before_the_next_task(
    tmp_path: Path, store_url: str
):
    from tests.gitutil import init_repo

    root = init_repo(tmp_path / "repo", {"README.md": "hi\n"})
    env = {**run_env(tmp_path, store_url), "LIMIT_ONCE": str(tmp_path / "limited-once")}
    run_ralph("add", "Limited once", "--id", "L", cwd=root, env=env, check=True)
    cmd = shlex.join([sys.executable, str(AGENTS / "retry_after.py"), "1"])
    done = subprocess.run(
        [*RALPH, "run", "--agent-cmd", cmd, "--worker", "w1", "-q"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from ralph.store import open_store

    with open_store(store_url) as store:
        order = [(e.kind, e.task_id) for e in store.events()]
        assert store.run_pauses() == []
    paused, resumed = order.index(("run_paused", None)), order.index(("run_resumed", None))
    claims = [i for i, e in enumerate(order) if e == ("claimed", "L")]
    assert len(claims) == 2 and claims[0] < paused < resumed < claims[1]  # lifted, then taken
    assert order.index(("done", "L")) > resumed
    assert ralph_json(root, env, "status")["pause"] is None
