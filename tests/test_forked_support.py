"""The suite's forked `python -m ralph` (tests/support/forked.py) behaves as a started one:
the same output and exit code, the test's working directory and environment, a session of
its own, the command line ps shows, death by signal, and a timeout that fires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import forked

RALPH = [sys.executable, "-m", "ralph"]

pytestmark = pytest.mark.skipif(
    subprocess.Popen.__name__ != "ForkedPopen", reason="RALPH_TEST_REAL_PROCESSES=1"
)


def repo(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def outcome(popen: type[subprocess.Popen], args: list[str], cwd: Path) -> tuple[int, str, str]:
    with popen([*RALPH, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
               text=True) as proc:  # fmt: skip
        assert getattr(proc, "_forked", False) is (popen is subprocess.Popen)
        out, err = proc.communicate(timeout=120)
    return proc.returncode, out.replace(str(cwd), "<repo>"), err.replace(str(cwd), "<repo>")


@pytest.mark.parametrize(
    "args", [["list"], ["nosuch"], ["show", "rl-missing"], ["--version"], ["run", "--workers"]]
)
def test_forked_and_started_ralph_print_the_same_and_exit_the_same(tmp_path: Path, args):
    started = outcome(forked.REAL, args, repo(tmp_path / "started"))
    assert outcome(subprocess.Popen, args, repo(tmp_path / "forked")) == started


def test_a_forked_ralph_uses_the_environment_and_cwd_it_is_given(tmp_path: Path):
    db = tmp_path / "elsewhere.db"
    done = subprocess.run([*RALPH, "add", "a task"], cwd=repo(tmp_path / "r"),
                          env={**os.environ, "RALPH_DB": str(db)}, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert db.is_file() and not (tmp_path / "r" / ".ralph" / "ralph.db").exists()


def test_a_forked_ralph_has_its_own_session_and_cmdline_and_dies_by_sigkill(tmp_path: Path):
    subprocess.run([*RALPH, "init"], cwd=repo(tmp_path / "r"), capture_output=True, check=True)
    proc = subprocess.Popen(
        [*RALPH, "status", "--watch"], cwd=tmp_path / "r", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert proc._forked
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert "-m ralph status --watch" in cmdline
    assert os.getsid(proc.pid) == proc.pid
    assert Path(f"/proc/{proc.pid}/cwd").resolve() == (tmp_path / "r").resolve()
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def test_a_forked_ralph_times_out_like_a_started_one(tmp_path: Path):
    subprocess.run([*RALPH, "init"], cwd=repo(tmp_path / "r"), capture_output=True, check=True)
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([*RALPH, "status", "--watch"], cwd=tmp_path / "r",
                       capture_output=True, timeout=1)  # fmt: skip
