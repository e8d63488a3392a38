"""Run one agent (or verify command) as a supervised child process.

The child gets its own session (process group), an argv list (never a shell), its prompt on stdin
or in its argv, and a cwd. Its output streams line by line to files, so 100 MB of output costs
no memory: only a short tail is kept. A parser sees every line as it arrives and may ask for the
run to stop at once (auth failure, rate limit). Wall and idle timeouts, and `cancel()` (the lease
renewer's kill switch, the run's stop), end the whole group: SIGTERM, then SIGKILL after a grace.

Nothing outlives an attempt: once the main process is gone, whatever is still running in its
process group, its session, among the descendants seen while it ran, or with its
`RALPH_ATTEMPT` marker in the environment (a dev server started with `setsid` keeps that) gets
SIGTERM, then SIGKILL after the grace, before `run()` returns (see `ralph/reaper.py`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from ralph import reaper
from ralph.agents.base import AgentSignal, StreamParser

MAX_LINE = 64 * 1024  # longer lines reach the parser in pieces; memory stays bounded
TAIL_LINES = 40
TAIL_WIDTH = 400
TRACK_EVERY = 1.0  # seconds between looks at the agent's descendants (one /proc scan each)

Ending = Literal["exited", "timeout", "idle_timeout", "signal", "cancelled"]


@dataclass
class ProcessResult:
    """How a supervised run ended."""

    exit_code: int | None
    ending: Ending
    duration: float
    signal: AgentSignal | None = None
    cancel_reason: str | None = None
    stdout_tail: list[str] = field(default_factory=list)
    stderr_tail: list[str] = field(default_factory=list)
    bytes_out: int = 0
    reaped: list[int] = field(default_factory=list)
    reaped_cmdlines: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.ending == "exited" and self.exit_code == 0

    def reaped_note(self) -> str | None:
        """'ended 1 process the agent left running (pid N: cmdline)', or None when none was."""
        if not self.reaped:
            return None
        n = len(self.reaped)
        which = "; ".join(
            f"pid {pid}: {self.reaped_cmdlines.get(pid) or '?'}"[:200] for pid in self.reaped[:5]
        )
        more = f"; {n - 5} more" if n > 5 else ""
        return f"ended {n} process{'es' if n > 1 else ''} the agent left running ({which}{more})"

    def tail(self, lines: int = 20) -> str:
        """The last lines of output (stderr after stdout), for failure notes and prompts."""
        return "\n".join([*self.stdout_tail[-lines:], *self.stderr_tail[-lines:]]).strip()


def new_marker() -> str:
    """A value for `RALPH_ATTEMPT` no other attempt on any host shares."""
    return f"{os.getpid()}-{secrets.token_hex(8)}"


class AgentProcess:
    """One child process under supervision; `run()` blocks until it is over.

    The child's env gets `RALPH_ATTEMPT=<marker>` (replacing one inherited from a ralph that
    runs us, so a nested run never reaps its parent's processes); every other variable given
    in `env`, `RALPH_*` included, is passed on as it is.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        out_dir: Path,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        parser: StreamParser | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        kill_grace: float = 5.0,
        on_signal: Callable[[AgentSignal], None] | None = None,
        names: tuple[str, str] = ("stdout", "stderr"),
        marker: str | None = None,
        track_descendants: bool = True,
        wrapper: bool = False,
    ):
        self.argv = list(argv)
        self.cwd = cwd
        self.out_dir = out_dir
        self.marker = marker or new_marker()
        self.env = dict(os.environ if env is None else env)
        self.env[reaper.MARKER] = self.marker
        self.track_descendants = track_descendants and reaper.available()
        # The main process only wraps the real one (bwrap, ralph/sandbox): SIGTERM goes to what
        # runs inside it, since the wrapper (or its init, a fork of it) would die at once and
        # take the agent down unwarned; SIGKILL still reaches everything.
        self.wrapper = wrapper
        self.stdin = stdin
        self.parser = parser or StreamParser()
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.kill_grace = kill_grace
        self.on_signal = on_signal
        self.names = names
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._cancel_reason: str | None = None
        self._cancel_at: float | None = None
        self._signal: AgentSignal | None = None
        self._last_output = 0.0
        self._bytes = 0
        self._tails: dict[str, deque[str]] = {
            "stdout": deque(maxlen=TAIL_LINES),
            "stderr": deque(maxlen=TAIL_LINES),
        }
        self._termed: set[int] = set()  # pids that already had their SIGTERM
        self._term_sent: float | None = None
        self._seen: dict[int, float] = {}  # descendants seen while running: pid -> start time
        self._tracked_at = 0.0
        self.proc: subprocess.Popen[bytes] | None = None

    def cancel(self, reason: str, grace: float = 0.0) -> None:
        """Stop the run: kill now, or let it go on for `grace` seconds first (first cancel wins,
        but a later cancel may shorten the grace)."""
        with self._lock:
            deadline = time.monotonic() + grace
            if self._cancel_reason is None:
                self._cancel_reason = reason
            if self._cancel_at is None or deadline < self._cancel_at:
                self._cancel_at = deadline
        self._wake.set()

    @property
    def cancelled(self) -> str | None:
        return self._cancel_reason

    def run(self) -> ProcessResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._last_output = started
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                stdin=subprocess.PIPE if self.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            (self.out_dir / self.names[1]).write_text(f"cannot start {self.argv[0]}: {exc}\n")
            return ProcessResult(127, "exited", 0.0, stderr_tail=[f"cannot start: {exc}"])
        threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, "stderr"), daemon=True),
            threading.Thread(target=self._wait_exit, daemon=True),
        ]
        if self.stdin is not None:
            threads.append(threading.Thread(target=self._write_stdin, daemon=True))
        for t in threads:
            t.start()
        ending = self._supervise(started)
        # Whatever the agent left running (servers, watchers, a `setsid` daemon) goes with it:
        # it would otherwise hold our pipes open and keep writing into the workspace.
        leftovers = self._leftovers()
        cmdlines = {pid: reaper.cmdline(pid) for pid in leftovers}
        grace = self.kill_grace
        if self._term_sent is not None:  # a timeout or cancel already started the clock
            grace = max(0.0, self.kill_grace - (time.monotonic() - self._term_sent))
        if reaper.available():
            reaped = reaper.reap(leftovers, grace, termed=self._termed)
        else:  # no /proc to list anything: end the group as a whole
            reaped = []
            self._end_group(grace)
        for t in threads:
            t.join(timeout=5)
        self.parser.finish(self.proc.returncode)
        return ProcessResult(
            exit_code=self.proc.returncode,
            ending=ending,
            duration=time.monotonic() - started,
            signal=self._signal,
            cancel_reason=self._cancel_reason,
            stdout_tail=list(self._tails["stdout"]),
            stderr_tail=list(self._tails["stderr"]),
            bytes_out=self._bytes,
            reaped=reaped,
            reaped_cmdlines={pid: cmdlines.get(pid, "") for pid in reaped},
        )

    def _leftovers(self) -> list[int]:
        """Every process that belongs to this attempt and still runs, the main one excepted."""
        assert self.proc is not None
        main = self.proc.pid
        pids = set(reaper.find(reaper.MARKER, self.marker))
        pids.update(reaper.in_session(main))
        pids.update(reaper.in_group(main))
        pids.update(pid for pid, t in self._seen.items() if reaper.start_time(pid) == t)
        if self.proc.returncode is None:
            pids.update(reaper.descendants(main))
        else:
            pids.discard(main)  # reaped by Popen: the number may already be someone else's
        return sorted(pids)

    def _track(self, now: float) -> None:
        """Remember the agent's descendants, so one that left the group and scrubbed its
        environment is still found at the end (it must be seen once while running)."""
        if self.track_descendants and now - self._tracked_at >= TRACK_EVERY:
            self._tracked_at = now
            assert self.proc is not None
            self._seen.update(reaper.descendants(self.proc.pid))

    def _supervise(self, started: float) -> Ending:
        assert self.proc is not None
        ending: Ending | None = None
        term_sent: float | None = None
        while self.proc.poll() is None:
            now = time.monotonic()
            if ending is None:
                if self._cancel_at is not None and now >= self._cancel_at:
                    ending = "signal" if self._signal else "cancelled"
                elif self.timeout is not None and now - started >= self.timeout:
                    ending = "timeout"
                elif self.idle_timeout is not None and now - self._last_output >= self.idle_timeout:
                    ending = "idle_timeout"
                if ending is not None:
                    self._terminate(signal.SIGTERM)
                    term_sent = self._term_sent = now
            elif term_sent is not None and now - term_sent >= self.kill_grace:
                self._terminate(signal.SIGKILL)
                term_sent = None
            if ending is None:
                self._track(now)
            self._wake.wait(self._next_check(now, started, term_sent))
            self._wake.clear()
        if ending is None and self._cancel_reason is not None and self._signal is not None:
            ending = "signal"  # exited on its own right after the parser raised the alarm
        return ending or "exited"

    def _next_check(self, now: float, started: float, term_sent: float | None) -> float:
        """Sleep until the nearest deadline; the exit waiter and cancel() wake us earlier."""
        deadlines = [now + 1.0]
        if self._cancel_at is not None:
            deadlines.append(self._cancel_at)
        if self.timeout is not None:
            deadlines.append(started + self.timeout)
        if self.idle_timeout is not None:
            deadlines.append(self._last_output + self.idle_timeout)
        if term_sent is not None:
            deadlines.append(term_sent + self.kill_grace)
        return max(0.01, min(deadlines) - now)

    def _terminate(self, sig: signal.Signals) -> None:
        """Signal the main process and everything of this attempt (group, session, marker)."""
        assert self.proc is not None
        if sig == signal.SIGKILL or not reaper.available():
            self._signal_group(sig)  # also reaches a child forked after the scan below
        if reaper.available():
            targets = [self.proc.pid, *self._leftovers()]
            if self.wrapper and sig == signal.SIGTERM:  # not the wrapper, nor its own forks
                wrap = reaper.cmdline(self.proc.pid)
                inner = [pid for pid in targets if reaper.cmdline(pid) != wrap]
                targets = inner or targets
            reached = reaper.send(targets, sig)
            if sig == signal.SIGTERM:
                self._termed.update(reached)

    def _end_group(self, grace: float) -> None:
        """SIGTERM the group (unless a timeout did), wait up to `grace` for it to empty, SIGKILL."""
        assert self.proc is not None
        if self._term_sent is None:
            self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def _wait_exit(self) -> None:
        assert self.proc is not None
        self.proc.wait()
        self._wake.set()

    def _write_stdin(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None and self.stdin is not None
        try:
            self.proc.stdin.write(self.stdin)
        except (BrokenPipeError, OSError):
            pass  # the agent exited or closed stdin without reading it all
        finally:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def _read(self, stream: IO[bytes] | None, name: Literal["stdout", "stderr"]) -> None:
        assert stream is not None
        tail = self._tails[name]
        filename = self.names[0] if name == "stdout" else self.names[1]
        try:
            out: IO[bytes] | None = open(self.out_dir / filename, "wb")  # noqa: SIM115
        except OSError:  # a full disk: keep reading, or the agent blocks on a full pipe
            out = None
        try:
            while True:
                raw = stream.readline(MAX_LINE)
                if not raw:
                    break
                if out is not None:
                    try:
                        out.write(raw)
                        out.flush()  # `ralph logs --follow` reads the file while the agent runs
                    except OSError:  # a full disk: the tail and the parser still see the output
                        with contextlib.suppress(OSError):
                            out.close()
                        out = None
                self._last_output = time.monotonic()
                self._bytes += len(raw)
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                tail.append(line[:TAIL_WIDTH])
                with self._lock:
                    signals = [s for s in self.parser.feed(line, name) or () if s is not None]
                if signals:
                    self._raise(signals[0])
        finally:
            if out is not None:
                with contextlib.suppress(OSError):
                    out.close()
        stream.close()

    def _raise(self, sig: AgentSignal) -> None:
        if self._signal is None:
            self._signal = sig
            self.cancel(sig.kind)
            if self.on_signal is not None:
                self.on_signal(sig)
