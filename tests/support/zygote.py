"""A Python that has imported ralph once and forks `python -m ralph` processes for the tests
(and tests/fixtures/run_ralph.py ones).

Run as a script by tests/support/forked.py, one per pytest worker. Each request over its
socket (SOCK_SEQPACKET, file descriptors passed with SCM_RIGHTS) names an argv, a cwd, an
environment and a session; the zygote forks a child that takes the three descriptors as its
stdin, stdout and stderr, closes every other descriptor, and runs `ralph` (or the script) as
`__main__`, the way `python -m ralph` (or `python SCRIPT`) does, then exits the way the
interpreter does (non-daemon threads joined, atexit handlers run, standard streams flushed).
Children are reaped only when the test's Popen asks, so an exited child stays a zombie until
then, as a real child would.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import json
import os
import pkgutil
import runpy
import signal
import socket
import sys
import threading
import traceback

from setproctitle import setproctitle

MAX_MESSAGE = 1 << 20


def preload() -> None:
    """Import every ralph module (the command modules `main` would import lazily too)."""
    import ralph

    for info in pkgutil.walk_packages(ralph.__path__, "ralph."):
        if info.name.endswith("__main__"):
            continue
        with contextlib.suppress(ImportError):  # an extra this machine lacks: left to the child
            importlib.import_module(info.name)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    preload()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 3)
        except (OSError, KeyboardInterrupt):
            break
        if not message:  # the test process ended
            break
        request = json.loads(message)
        if request["op"] == "reap":
            try:
                _, status = os.waitpid(request["pid"], 0)
                reply = {"status": status}
            except ChildProcessError as exc:
                reply = {"error": str(exc)}
            sock.send(json.dumps(reply).encode())
            continue
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            child(request, fds, ready_w)  # never returns
        for fd in [*fds, ready_w]:
            os.close(fd)
        with open(ready_r, "rb") as ready:  # like exec: Popen returns once the child is set up
            report = ready.read()
        if report == b"ok":
            sock.send(json.dumps({"pid": pid}).encode())
        else:
            os.waitpid(pid, 0)
            sock.send(json.dumps({"error": report.decode(errors="replace")}).encode())
    os._exit(0)


def child(request: dict, fds: list[int], ready: int) -> None:
    """Become `python -m ralph ARGS` in the request's cwd, environment and session; write
    "ok" to `ready` once set up (or what went wrong)."""
    code = 127
    try:
        for target, fd in enumerate(fds):
            if fd != target:
                os.dup2(fd, target)
        ready = os.dup2(ready, 3)
        os.closerange(4, os.sysconf("SC_OPEN_MAX"))
        script, args = request.get("script"), request["args"]
        command = [sys.executable, *([script] if script else ["-m", "ralph"]), *args]
        setproctitle(" ".join(command))  # what ps and /proc/PID/cmdline show for it started
        if request["session"]:
            os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # `-m` puts the working directory first on sys.path, a script its own folder
        sys.path[0] = os.path.dirname(script) if script else os.getcwd()
        _stdio(request["env"])
        sys.argv = [script or "-m", *args]
        sys.orig_argv = command
    except BaseException as exc:  # noqa: BLE001 - reported to the test as Popen would raise it
        os.write(ready, f"{type(exc).__name__}: {exc}".encode())
        os._exit(code)
    os.write(ready, b"ok")
    os.close(ready)
    try:
        code = _run_main(script)
    finally:
        os._exit(code)


def _run_main(script: str | None) -> int:
    interrupted = False
    try:
        if script:
            runpy.run_path(script, run_name="__main__")
        else:
            runpy.run_module("ralph", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code, interrupted = 1, True
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    # What Py_FinalizeEx does before the process ends.
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - the interpreter exits 120 when stdout cannot flush
        code = 120
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    if interrupted:  # an uncaught KeyboardInterrupt ends the process by SIGINT
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _stdio(env: dict[str, str]) -> None:
    """New standard streams on descriptors 0-2, made as the interpreter makes them at start."""
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    encoding = sys.stdout.encoding

    def writer(fd: int, errors: str, line: bool) -> io.TextIOWrapper:
        raw = io.FileIO(fd, "w", closefd=False)
        return io.TextIOWrapper(
            io.BufferedWriter(raw),
            encoding=encoding,
            errors=errors,
            line_buffering=line or raw.isatty(),
            write_through=unbuffered,
        )

    stdin = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)),
        encoding=encoding,
        errors=sys.stdin.errors if sys.stdin else "strict",
    )
    stdout = writer(1, sys.stdout.errors or "strict", False)
    stderr = writer(2, "backslashreplace", True)  # stderr is line-buffered since 3.9
    sys.stdin = sys.__stdin__ = stdin
    sys.stdout = sys.__stdout__ = stdout
    sys.stderr = sys.__stderr__ = stderr


if __name__ == "__main__":
    main()
