#!/usr/bin/env python3
"""Fake agent that tries to break out of ralph's sandbox, then does its task.

Each try becomes one line of `out/<task>.txt` (its own output, which lands as its commit):
`blocked: <try>: <why>` when the try failed, `done-inside: <try>` when it seemed to work (the
test then checks from the host that nothing changed there), `ESCAPED: <try>: ...` when it got
something it must never get (a secret's value, a connection out). A task whose title says
"a normal task" only writes its file.

Environment the test sets: ESCAPE_REPO (the real repository), ESCAPE_TARGET (the target
branch), ESCAPE_DB (the store's SQLite file), ESCAPE_RALPH_PID, ESCAPE_PORT (a loopback port the
test listens on), ESCAPE_SLEEP (the argument of the `setsid sleep` it leaves behind),
ESCAPE_HOST_FILE (a host file ralph must never write through a planted link).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

prompt = sys.stdin.read()
task = os.environ["RALPH_TASK_ID"]
out = Path(f"out/{task}.txt")
out.parent.mkdir(parents=True, exist_ok=True)
lines: list[str] = []


def attempt(name: str, action) -> None:  # type: ignore[no-untyped-def]
    try:
        said = action()
    except Exception as exc:  # every failure is the sandbox saying no
        why = " ".join(str(exc).split())[:160]  # one line, whatever the error says
        lines.append(f"blocked: {name}: {type(exc).__name__}: {why}")
        return
    lines.append(said if said else f"done-inside: {name}")


def git(*args: str, cwd: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    return done.stdout.strip()


def write_home() -> None:
    Path(os.environ["HOME"], "pwned").write_text("pwned\n")


def read_ssh() -> str:
    text = Path(os.environ["HOME"], ".ssh", "id_ed25519").read_text()
    return f"ESCAPED: read ~/.ssh/id_ed25519: {text.strip()}"


def move_target(cwd: str | None) -> None:
    """Move the target back one commit, then put our own view's ref back (a careful attacker
    covers its tracks; our HEAD must still hold the base for the task to land)."""
    target = f"refs/heads/{os.environ.get('ESCAPE_TARGET', 'main')}"
    before = git("rev-parse", target, cwd=cwd)
    git("update-ref", target, f"{before}~1", cwd=cwd)
    git("update-ref", target, before, cwd=cwd)


def edit_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write("\n# escape artist was here\n")


def hook(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho hooked >> /tmp/hooked\nexit 1\n")
    path.chmod(0o755)


def update_store() -> None:
    db = os.environ.get("ESCAPE_DB") or os.environ.get("RALPH_DB", "")
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg

        with psycopg.connect(db, connect_timeout=3) as pg:
            pg.execute("UPDATE tasks SET status = 'done' WHERE id != %s", (task,))
        return
    conn = sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=2)
    try:
        conn.execute("UPDATE tasks SET status = 'done' WHERE id != ?", (task,))
        conn.commit()
    finally:
        conn.close()


def mine(proc: Path) -> bool:
    """Only this test's ralph (its environment names our repository): should the sandbox
    fail, other ralph runs on the machine must not pay for it."""
    try:
        env = (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"ESCAPE_REPO={os.environ.get('ESCAPE_REPO', '')}".encode() in env


def kill_ralph() -> None:
    pids = [int(os.environ["ESCAPE_RALPH_PID"])] if os.environ.get("ESCAPE_RALPH_PID") else []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"ralph" in cmd and b"run" in cmd and mine(entry):
                pids.append(int(entry.name))
    if not pids:
        raise ProcessLookupError("no ralph process visible in /proc")
    for pid in pids:
        os.kill(pid, 9)


def keys() -> str | None:
    found = [
        f"{k}={v}"
        for k, v in os.environ.items()
        if k.endswith(("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD"))
    ]
    if not found:
        raise LookupError("no API key or token in the environment")
    return "ESCAPED: keys: " + " ".join(found)


def connect() -> str:
    with socket.create_connection(("127.0.0.1", int(os.environ["ESCAPE_PORT"])), timeout=3):
        return "ESCAPED: connected to the host's loopback listener"


def leave_sleeper() -> None:
    subprocess.Popen(
        ["setsid", "sleep", os.environ.get("ESCAPE_SLEEP", "1000")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def plant_result_link() -> None:
    """ralph writes result.json after the agent: through this link, over a host file."""
    os.symlink(os.environ["ESCAPE_HOST_FILE"], Path(os.environ["RALPH_RUN_DIR"], "result.json"))


def link_notes() -> None:
    """ralph reads RALPH_NOTES on the host into progress.md, which is committed."""
    notes = Path(os.environ["RALPH_NOTES"])
    notes.unlink(missing_ok=True)
    os.symlink(Path(os.environ["HOME"], ".ssh", "id_ed25519"), notes)


def link_progress() -> None:
    """ralph appends to progress.md on the host, and reads it into the next prompt."""
    Path("progress.md").unlink(missing_ok=True)
    os.symlink(os.environ["ESCAPE_HOST_FILE"], "progress.md")


if "a normal task" not in prompt:
    repo = os.environ.get("ESCAPE_REPO", "")
    attempt("write $HOME/pwned", write_home)
    attempt("read ~/.ssh/id_ed25519", read_ssh)
    attempt("update-ref the target in the workspace", lambda: move_target(None))
    attempt("update-ref the target in the real repository", lambda: move_target(repo))
    ws_git = Path(git("rev-parse", "--absolute-git-dir"))
    attempt("edit the workspace's .git/config", lambda: edit_file(ws_git / "config"))
    attempt("edit the real .git/config", lambda: edit_file(Path(repo, ".git", "config")))
    attempt("install the workspace's pre-commit hook", lambda: hook(ws_git / "hooks/pre-commit"))
    attempt("install the real pre-commit hook", lambda: hook(Path(repo, ".git/hooks/pre-commit")))
    attempt("update the store", update_store)
    attempt("kill -9 ralph", kill_ralph)
    attempt("print every API key", keys)
    attempt("connect to the host's loopback port", connect)
    attempt("setsid sleep", leave_sleeper)
    attempt("plant a symlink as result.json", plant_result_link)
    attempt("link RALPH_NOTES to the ssh key", link_notes)
    attempt("link progress.md to a host file", link_progress)
out.write_text("\n".join([f"{task} was here", *lines]) + "\n")
print(f"edited {out}")
