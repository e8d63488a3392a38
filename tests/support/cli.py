"""`ralph` for the tests: short store commands in this process, the rest as real processes.

A test's setup and reads (`add`, `list --json`, `show`, `status --json`, ...) are hundreds of
calls a run; as processes each paid ~75 ms of interpreter and import start-up, about a tenth of
the suite's CPU. They run here through `ralph.cli.main`, the console script's own entry point,
with the test's cwd, environment and stdin, and come back as a CompletedProcess like
`subprocess.run` gives. What runs agents, serves, watches or waits (`run`, `worker`, `web`,
`demo`, `notify`, `--watch`, `--follow`) still starts a real `python -m ralph` process, and
so do `review`, `approve` and `reject`: their tests kill the landing process from a git hook.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

RALPH = [sys.executable, "-m", "ralph"]

IN_PROCESS = frozenset(
    {
        "add", "list", "show", "update", "done", "retry", "block", "unblock", "ready", "dep",
        "claim", "events", "init", "import", "export", "status", "logs", "stats", "pause",
        "resume", "db", "report", "metrics", "doctor",
    }
)  # fmt: skip
# Flags that turn a short command into one that keeps running.
LONG_FLAGS = frozenset({"--watch", "--follow", "-f", "--port"})


def ralph(
    *args: str,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,  # noqa: A002 - subprocess.run's name
    timeout: float | None = 180,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`ralph ARGS` in `cwd` with `env` (None: this process's), output captured as text;
    `check` raises CalledProcessError on a non-zero exit, as subprocess.run does. `timeout`
    bounds a process; a short command in this process returns on its own."""
    if in_process(args):
        done = _call(list(args), cwd, env, input)
        if check:
            done.check_returncode()
        return done
    return subprocess.run(
        [*RALPH, *args],
        cwd=cwd,
        env=None if env is None else dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def in_process(args: Sequence[str]) -> bool:
    """Whether `ralph ARGS` is a short store command (see IN_PROCESS)."""
    if LONG_FLAGS.intersection(args):
        return False
    words = iter(args)
    for word in words:
        if word == "--db":
            next(words, None)
        elif not word.startswith("-"):
            return word.split(":")[0] in IN_PROCESS
    return False


def _call(
    args: list[str], cwd: Path | str | None, env: Mapping[str, str] | None, input: str | None
) -> subprocess.CompletedProcess[str]:
    from ralph.cli import main

    out, err = io.StringIO(), io.StringIO()
    with (
        _process_state(cwd, env, input),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["ralph", *args], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _process_state(
    cwd: Path | str | None, env: Mapping[str, str] | None, input: str | None
) -> Iterator[None]:
    """What a child process would have had: its cwd, its environment and its stdin."""
    saved_env, saved_cwd, saved_stdin = os.environ.copy(), os.getcwd(), sys.stdin
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin = io.StringIO(input or "")
        yield
    finally:
        sys.stdin = saved_stdin
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
