"""Start `ralph web` as a real process for the dashboard tests, and talk HTTP to it."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

RALPH = [sys.executable, "-m", "ralph"]
CHROMIUM = Path("/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(
    cwd: Path, env: Mapping[str, str], *args: str, host: str = "127.0.0.1"
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`ralph web --port 0 ARGS` until the block ends; yields the process and its base URL.
    The port is the one it printed: bound before that line, so no other test can take it."""
    proc = subprocess.Popen(
        [*RALPH, "web", "--host", host, "--port", "0", *args],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen: list[str] = []
        reader = threading.Thread(target=_read_until_served, args=(proc, seen), daemon=True)
        reader.start()
        reader.join(60)  # a guard, not a timing: the line comes once the store is open
        match = re.search(r"^ralph web: .* at https?://\S+:(\d+)/", seen[-1] if seen else "")
        assert match, "".join(seen) or "ralph web did not start"
        yield proc, f"http://127.0.0.1:{match.group(1)}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _read_until_served(proc: subprocess.Popen[str], seen: list[str]) -> None:
    """Read `ralph web`'s stderr up to its "ralph web: ... at URL" line (or its end)."""
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("ralph web: "):
            return


def request(
    base: str,
    method: str,
    path: str,
    *,
    body: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], str]:
    """One HTTP request; returns status, headers (lowercased names) and the body as text."""
    hostport = base.removeprefix("http://")
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        sent = dict(headers or {})
        if body is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body, headers=sent)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read().decode()
    finally:
        conn.close()


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any RALPH_ setting, with its own HOME."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env["HOME"] = str(home)
    env.update(extra)
    return env


def login_path(proc: subprocess.Popen[str]) -> str:
    """`/login?token=...` from the link `ralph web` printed at start: the only place the write
    token appears (it is printed before the server answers, so it is there to read)."""
    cached = getattr(proc, "login_path", None)
    if cached:
        return cached
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"https?://\S+?(/login\?token=\S+)", line)
        if match:
            proc.login_path = match.group(1)  # type: ignore[attr-defined]
            return match.group(1)
    raise AssertionError("ralph web printed no login link")


def login(proc: subprocess.Popen[str], base: str) -> tuple[dict[str, str], str]:
    """Log in through the printed link: the session cookie header and the session's CSRF token
    (read from a page, as the page's own script does)."""
    status, headers, _ = request(base, "GET", login_path(proc))
    assert status == 303, status
    cookie = {"Cookie": headers["set-cookie"].split(";")[0]}
    page = request(base, "GET", "/", headers=cookie)[2]
    match = re.search(r'name="ralph-csrf" content="([^"]+)"', page)
    assert match, "a logged-in page carries no CSRF token"
    return cookie, match.group(1)
