"""AgentProcess with real processes: nothing an agent starts outlives its attempt."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

from ralph import reaper
from ralph.process import AgentProcess, ProcessResult

AGENTS = Path(__file__).parent / "agents"

pytestmark = pytest.mark.skipif(not reaper.available(), reason="finding processes needs /proc")


def gone(pid: int) -> bool:
    """True when the process has exited (a zombie waiting for its parent counts as gone)."""
    return reaper.start_time(pid) is None


def agent(tmp_path: Path, script: str, *args: str, **kw) -> AgentProcess:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir(exist_ok=True)
    env = {**os.environ, "RALPH_TASK_ID": "T1", "ZOO_PID_DIR": str(pid_dir), **kw.pop("env", {})}
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    kw.setdefault("kill_grace", 2.0)
    return AgentProcess(
        [sys.executable, str(AGENTS / script), *args],
        cwd=work,
        out_dir=tmp_path / "run",
        env=env,
        stdin=b"the prompt\n",
        **kw,
    )


def run_guarded(proc: AgentProcess) -> ProcessResult:
    """proc.run() in a thread; a run() that never returns fails the test instead of hanging it."""
    results: list[ProcessResult] = []
    thread = threading.Thread(target=lambda: results.append(proc.run()), daemon=True)
    thread.start()
    thread.join(120)
    assert results, "run() did not return although the agent had exited"
    return results[0]


def child_pid(tmp_path: Path) -> int:
    return int((tmp_path / "pids" / "child.pid").read_text())


def test_the_agent_gets_a_fresh_attempt_marker_and_keeps_the_ralph_variables(tmp_path: Path):
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    seen = []
    for _ in range(2):
        proc = AgentProcess(
            [sys.executable, "-c", dump],
            cwd=tmp_path,
            out_dir=tmp_path / "run",
            env={"PATH": os.environ["PATH"], "RALPH_TASK_ID": "T1", "RALPH_ATTEMPT": "outer"},
        )
        result = proc.run()
        assert result.ok
        env = json.loads((tmp_path / "run" / "stdout").read_text())
        assert env["RALPH_ATTEMPT"] == proc.marker != "outer"
        assert env["RALPH_TASK_ID"] == "T1"
        seen.append(proc.marker)
    assert seen[0] != seen[1]


def test_a_daemon_that_escaped_with_setsid_is_ended_before_run_returns(tmp_path: Path):
    proc = agent(tmp_path, "setsid_daemon.py")
    result = run_guarded(proc)
    daemon = int((tmp_path / "pids" / "daemon_T1.pid").read_text())
    assert result.ok
    assert gone(daemon)
    assert result.reaped == [daemon]
    assert reaper.find(reaper.MARKER, proc.marker) == []
    note = result.reaped_note()
    assert note is not None and note.startswith("ended 1 process the agent left running")
    assert f"pid {daemon}: " in note and "setsid_daemon.py" in note


def test_a_child_ignoring_sigterm_gets_it_and_then_sigkill_after_the_grace(tmp_path: Path):
    result = run_guarded(agent(tmp_path, "leaves_children.py", "ignore-term", kill_grace=0.5))
    child = child_pid(tmp_path)
    assert result.ok
    assert (tmp_path / "pids" / f"term_{child}").read_text() == "SIGTERM\n"
    assert gone(child)
    assert result.reaped == [child]


def test_a_group_member_holding_the_stdout_pipe_does_not_hang_run(tmp_path: Path):
    result = run_guarded(agent(tmp_path, "leaves_children.py", "hold-stdout"))
    child = child_pid(tmp_path)
    assert (result.ending, result.exit_code) == ("exited", 0)
    assert result.stdout_tail == ["left a child running (hold-stdout)"]
    assert gone(child) and result.reaped == [child]


def test_a_child_in_its_own_group_without_the_marker_is_ended_through_the_session(
    tmp_path: Path,
):
    proc = agent(tmp_path, "leaves_children.py", "new-group", track_descendants=False)
    result = run_guarded(proc)
    child = child_pid(tmp_path)
    assert gone(child) and result.reaped == [child]


def test_a_detached_child_without_the_marker_seen_while_running_is_ended(tmp_path: Path):
    """Left the session and dropped RALPH_ATTEMPT: only the descendants seen while the agent
    ran lead to it."""
    proc = agent(tmp_path, "leaves_children.py", "scrubbed-setsid")
    results: list[ProcessResult] = []
    thread = threading.Thread(target=lambda: results.append(proc.run()), daemon=True)
    thread.start()
    pid_file = tmp_path / "pids" / "child.pid"
    while not (pid_file.exists() and int(pid_file.read_text()) in proc._seen):
        assert thread.is_alive()
        thread.join(0.05)
    (tmp_path / "pids" / "go").write_text("")
    thread.join(120)
    child = child_pid(tmp_path)
    assert results and results[0].ok
    assert gone(child) and results[0].reaped == [child]


def test_a_timeout_ends_the_agent_and_the_daemon_it_started(tmp_path: Path):
    proc = agent(tmp_path, "leaves_children.py", "setsid-hang", timeout=1.0, kill_grace=0.5)
    result = run_guarded(proc)
    child = child_pid(tmp_path)
    assert result.ending == "timeout"
    assert gone(child)
    assert reaper.find(reaper.MARKER, proc.marker) == []


def test_a_cancelled_run_ends_the_daemon_too(tmp_path: Path):
    proc = agent(tmp_path, "leaves_children.py", "setsid-hang", kill_grace=0.5)
    results: list[ProcessResult] = []
    thread = threading.Thread(target=lambda: results.append(proc.run()), daemon=True)
    thread.start()
    while not (tmp_path / "pids" / "child.pid").exists():
        assert thread.is_alive()
        thread.join(0.05)
    proc.cancel("lease_lost")
    thread.join(120)
    assert results and results[0].ending == "cancelled"
    assert gone(child_pid(tmp_path))
    assert reaper.find(reaper.MARKER, proc.marker) == []


def test_an_agent_that_leaves_nothing_running_reports_nothing_reaped(tmp_path: Path):
    result = run_guarded(agent(tmp_path, "edit.py"))
    assert result.ok
    assert (result.reaped, result.reaped_note()) == ([], None)


def test_without_proc_the_group_is_still_ended_after_the_agent_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Where /proc is missing (macOS) nothing can be listed; the process group still goes."""
    monkeypatch.setattr(reaper, "available", lambda: False)
    result = run_guarded(agent(tmp_path, "leaves_children.py", "hold-stdout"))
    child = child_pid(tmp_path)
    assert result.ok and result.reaped == []
    monkeypatch.undo()
    assert gone(child)
