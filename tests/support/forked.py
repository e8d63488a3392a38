"""`python -m ralph` processes forked from a pre-imported Python instead of started fresh.

The suite starts `python -m ralph run` (and `worker`, `web`, `review`, ...) about 500 times,
and the first-use tests ~190 `tests/fixtures/run_ralph.py -` processes; each spent ~150 ms of
CPU importing ralph before doing anything. `install()` makes `subprocess.Popen` (and so
`subprocess.run`) hand such a command to a zygote (tests/support/zygote.py) that imported
ralph once and forks a child for each, the way multiprocessing's forkserver does. The child
is still its own process: its own pid, process group or session, working directory,
environment and standard streams, the command line ps shows, killable by any signal, and a
zombie until the test waits for it. What it does not do is start an interpreter and import:
the console script, start-up costs and import errors are covered by the tests that run
`ralph` from a shell (tests/test_readme.py, tests/test_seed_examples.py), by the migration
tests' older releases and by bench/bench_cli.py, which start it for real.

Anything unusual falls back to a real process: another interpreter, a `preexec_fn`,
`pass_fds`, a user or group, an environment whose values of what is read at start (PYTHON*,
the locale, ...) differ from this process's, a missing cwd, a process forked from this one,
or RALPH_TEST_REAL_PROCESSES=1.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ZYGOTE = Path(__file__).with_name("zygote.py")
# tests/fixtures/run_ralph.py with `-` (the installed ralph): the first-use tests' processes
RUN_RALPH = str(Path(__file__).parents[1] / "fixtures" / "run_ralph.py")
REAL = next(c for c in subprocess.Popen.__mro__ if c.__module__ == "subprocess")  # unpatched
_lock = threading.Lock()
_zygote: tuple[int, socket.socket, subprocess.Popen] | None = None  # (owner pid, socket, proc)
_base_env: dict[str, str] = {}
# Variables read when the interpreter starts or a module is imported (Python's own, the locale,
# GitPython's, typer's and psutil's): a child whose values differ starts for real.
AT_START = ("PYTHON", "LANG", "LC_", "GIT_PYTHON", "TYPER", "_TYPER", "PSUTIL", "TERMINAL_WIDTH",
            "GITHUB_ACTIONS", "FORCE_COLOR", "PY_COLORS")  # fmt: skip


def install() -> None:
    """Route `python -m ralph` commands of this process's Popen through the zygote, which
    starts with the environment this process has now."""
    if os.environ.get("RALPH_TEST_REAL_PROCESSES") != "1" and hasattr(os, "pidfd_open"):
        _base_env.update(os.environ)
        subprocess.Popen = ForkedPopen  # type: ignore[misc]


def _at_start(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(AT_START)}


def _connection() -> socket.socket:
    """This process's zygote, started on first use (again if it ended)."""
    global _zygote
    if _zygote is not None and _zygote[0] == os.getpid() and _zygote[2].poll() is None:
        return _zygote[1]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = REAL(
        [sys.executable, str(ZYGOTE), str(theirs.fileno())],
        env=_base_env,
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    _zygote = (os.getpid(), ours, proc)
    return ours


def _ask(request: dict, fds: Sequence[int] = ()) -> dict:
    with _lock:
        sock = _connection()
        socket.send_fds(sock, [json.dumps(request).encode()], list(fds))
        reply = sock.recv(1 << 16)
    if not reply:
        raise OSError("the ralph zygote ended")
    return json.loads(reply)


class ForkedPopen(REAL):  # type: ignore[misc,valid-type]
    """subprocess.Popen, except that `[sys.executable, "-m", "ralph", ...]` forks from the
    zygote when nothing asks for more than a plain child (see the module docstring)."""

    _pidfd: int | None = None
    _forked = False

    def _execute_child(  # noqa: PLR0913 - subprocess.Popen's signature
        self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
        creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite,
        restore_signals, gid, gids, uid, umask, start_new_session, process_group,
    ):  # fmt: skip
        argv = [os.fsdecode(a) for a in args] if isinstance(args, list | tuple) else None
        environment = dict(os.environ if env is None else env)
        workdir = os.fsdecode(cwd) if cwd is not None else os.getcwd()
        script = argv is not None and argv[:3] == [sys.executable, RUN_RALPH, "-"]
        plain = (
            argv is not None
            and (argv[:3] == [sys.executable, "-m", "ralph"] or script)
            and executable is None
            and preexec_fn is None
            and not pass_fds
            and not shell
            and close_fds
            and restore_signals
            and (gid, gids, uid) == (None, None, None)
            and process_group in (None, -1)
            and umask < 0
            and _at_start(environment) == _at_start(_base_env)
            and os.path.isdir(workdir)
            and (_zygote is None or _zygote[0] == os.getpid())
        )
        if not plain:
            return super()._execute_child(
                args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo,
                creationflags, shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite,
                restore_signals, gid, gids, uid, umask, start_new_session, process_group,
            )  # fmt: skip
        try:
            stdio = [fd if fd != -1 else default for fd, default in
                     ((p2cread, 0), (c2pwrite, 1), (errwrite, 2))]  # fmt: skip
            request = {"op": "spawn", "args": argv[2:] if script else argv[3:], "cwd": workdir,
                       "script": RUN_RALPH if script else None,
                       "env": {os.fsdecode(k): os.fsdecode(v) for k, v in environment.items()},
                       "session": bool(start_new_session)}  # fmt: skip
            reply = _ask(request, stdio)
            if "error" in reply:
                raise OSError(f"forking {argv[3:]} failed: {reply['error']}")
            self.pid = reply["pid"]
            self._child_created = self._forked = True
            self._pidfd = os.pidfd_open(self.pid)  # a zombie until reaped: the pid stays ours
        finally:
            self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)

    def _reap(self) -> None:
        """The child has ended: have the zygote reap it, and take its status."""
        reply = _ask({"op": "reap", "pid": self.pid})
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if "status" in reply:
            self._handle_exitstatus(reply["status"])
        else:  # reaped already: nothing more to know
            self.returncode = 0

    def _ended(self, timeout: float | None) -> bool:
        fd = self._pidfd
        if fd is None:  # another thread reaped it
            return True
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)

    def _internal_poll(self, _deadstate=None, **defaults):  # type: ignore[override]
        if not self._forked:
            return super()._internal_poll(_deadstate, **defaults)
        if self.returncode is not None:
            return self.returncode
        if not self._waitpid_lock.acquire(False):
            return None
        try:
            if self.returncode is None and self._ended(0):
                self._reap()
        except OSError:
            if _deadstate is not None:
                self.returncode = _deadstate
        finally:
            self._waitpid_lock.release()
        return self.returncode

    def _wait(self, timeout):  # type: ignore[override]
        if not self._forked:
            return super()._wait(timeout)
        end = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if end is None else max(0.0, end - time.monotonic())
            if self._ended(left):
                with self._waitpid_lock:
                    if self.returncode is None:
                        self._reap()
            elif end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode
