"""reaper: finding processes by their environment and ending them, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ralph import reaper

AGENTS = Path(__file__).parent / "agents"

pytestmark = pytest.mark.skipif(not reaper.available(), reason="finding processes needs /proc")

# Starts a grandchild in a new session (double fork + setsid, like a daemon), prints its pid.
DETACH = r"""
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # or the caller's pipe stays open for 300 s
        os.write(w, f"{os.getpid()}\n".encode())
        time.sleep(300)
    os._exit(0)
os.wait()
print(os.read(r, 64).decode().strip())
"""

SLEEP = "import time; time.sleep(300)"


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids a test starts; whatever is still alive is killed afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if reaper.start_time(pid) is not None:
            os.kill(pid, signal.SIGKILL)


def detached(env: dict[str, str], started: list[int]) -> int:
    """A daemon that is nobody's child of ours: new session, reparented away from us."""
    out = subprocess.run(
        [sys.executable, "-c", DETACH],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pid = int(out)
    started.append(pid)
    return pid


def wait_until(check, what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_find_env_finds_a_detached_orphan_and_reap_ends_it(tmp_path: Path, started: list[int]):
    workspace = str(tmp_path / "ws")
    pid = detached({"RALPH_WORKSPACE": workspace}, started)
    assert reaper.find_env(RALPH_WORKSPACE=workspace) == [pid]
    assert reaper.find_by_env({"RALPH_WORKSPACE": workspace}) == [pid]
    assert reaper.reap(reaper.find_env(RALPH_WORKSPACE=workspace), grace=5.0) == [pid]
    assert reaper.start_time(pid) is None
    assert reaper.find_env(RALPH_WORKSPACE=workspace) == []


def test_the_agent_of_a_sigkilled_worker_is_found_by_its_workspace_and_ended(
    tmp_path: Path, started: list[int]
):
    """The worker dies by SIGKILL; its agent (own session) lives on, writing into the tree."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    worker_code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, sys.argv[1]], stdin=subprocess.DEVNULL,"
        " start_new_session=True)\n"
        "time.sleep(300)\n"
    )
    env = {
        **os.environ,
        "RALPH_WORKSPACE": str(workspace),
        "RALPH_TASK_ID": "T1",
        "ZOO_PID_DIR": str(pid_dir),
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", worker_code, str(AGENTS / "orphan_writer.py")],
        cwd=workspace,
        env=env,
    )
    started.append(worker.pid)
    pid_file = pid_dir / "orphan_T1.pid"
    wait_until(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"), "agent start")
    agent = int(pid_file.read_text())
    started.append(agent)
    wait_until(lambda: (workspace / "out" / "T1.late").exists(), "late writes")
    worker.kill()
    worker.wait()
    assert reaper.start_time(agent) is not None  # the orphan outlived its worker
    assert reaper.find_env(RALPH_WORKSPACE=str(workspace)) == [agent]
    assert reaper.reap(reaper.find_env(RALPH_WORKSPACE=str(workspace)), grace=5.0) == [agent]
    assert reaper.start_time(agent) is None


def test_find_matches_whole_values_and_needs_every_pair(tmp_path: Path, started: list[int]):
    ws = str(tmp_path / "ws")
    one = detached({"RALPH_WORKSPACE": ws, "ZOO_TAG": "a"}, started)
    two = detached({"RALPH_WORKSPACE": ws + "2", "ZOO_TAG": "a"}, started)
    assert reaper.find_env(RALPH_WORKSPACE=ws) == [one]
    assert reaper.find_env(RALPH_WORKSPACE=ws + "2") == [two]
    assert sorted(reaper.find_env(ZOO_TAG="a")) == sorted([one, two])
    assert reaper.find_env(RALPH_WORKSPACE=ws, ZOO_TAG="b") == []
    assert reaper.find("RALPH_WORKSPACE", ws[:-1]) == []
    assert reaper.find_env() == []


def test_our_own_process_and_its_ancestors_are_never_found_or_reaped(
    tmp_path: Path, started: list[int]
):
    """A chain that shares one marker: the innermost process finds and reaps only its sibling."""
    marker = f"chain-{os.getpid()}-{tmp_path.name}"
    inner = (
        "import json, os, subprocess, sys\n"
        "from ralph import reaper\n"
        "sib = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"found = reaper.find('RALPH_ATTEMPT', {marker!r})\n"
        "reaped = reaper.reap([*found, os.getpid(), os.getppid()], 5.0)\n"
        "print(json.dumps({'me': os.getpid(), 'parent': os.getppid(), 'sibling': sib.pid,"
        " 'found': found, 'reaped': reaped, 'sibling_code': sib.wait()}))\n"
    )
    outer = (
        "import subprocess, sys\n"
        "r = subprocess.run([sys.executable, '-c', sys.argv[1]], capture_output=True, text=True)\n"
        "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr); sys.exit(r.returncode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", outer, inner],
        env={**os.environ, "RALPH_ATTEMPT": marker},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["found"] == [seen["sibling"]]
    assert seen["reaped"] == [seen["sibling"]]
    assert seen["sibling_code"] == -signal.SIGTERM
    assert os.getpid() not in reaper.find_env(PATH=os.environ["PATH"])


def test_reap_sends_sigkill_only_to_what_outlives_sigterm_and_the_grace(started: list[int]):
    ignores = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    stubborn = subprocess.Popen([sys.executable, "-c", ignores], stdout=subprocess.PIPE)
    polite = subprocess.Popen(
        [sys.executable, "-c", "print('ready', flush=True); " + SLEEP], stdout=subprocess.PIPE
    )
    started += [stubborn.pid, polite.pid]
    for p in (stubborn, polite):
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    assert sorted(reaper.reap([stubborn.pid, polite.pid], grace=0.3)) == sorted(
        [stubborn.pid, polite.pid]
    )
    assert (stubborn.wait(), polite.wait()) == (-signal.SIGKILL, -signal.SIGTERM)


def test_a_stopped_process_is_woken_to_act_on_sigterm(started: list[int]):
    proc = subprocess.Popen([sys.executable, "-c", SLEEP])
    started.append(proc.pid)
    os.kill(proc.pid, signal.SIGSTOP)
    assert reaper.reap([proc.pid], grace=60.0) == [proc.pid]
    assert proc.wait() == -signal.SIGTERM


def test_reaping_processes_that_are_already_gone_ends_nothing():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert reaper.reap([proc.pid], grace=1.0) == []
    assert reaper.reap([], grace=1.0) == []
