"""Worker names and host identities that stay apart across hosts sharing a hostname.

Containers, network namespaces and cloned VMs often share one hostname, so `<hostname>-worker-1`
clashed between hosts on one store. The tag added to it is a short hash of what tells such
hosts apart: the machine id (/etc/machine-id), the network namespace and the checkout's path.
It is stable, so a run restarted in the same checkout gets its names (and worktrees) back.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

MACHINE_ID = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _netns() -> str:
    try:
        return str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return ""


def host_tag(root: Path | str | None = None) -> str:
    """Four hex digits naming this machine and network namespace (and checkout, if given)."""
    machine = next((m for m in map(_read, MACHINE_ID) if m), "")
    parts = [machine, _netns(), os.uname().nodename]
    parts += [os.path.realpath(root)] if root is not None else []
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:4]


# What a worker row records as its host: the hostname alone cannot tell apart hosts that share
# it, and "this host" decides whether a name's holder is judged by its pid (a dead one is
# taken over, its claims expired at once) or by its heartbeats.
HOST = f"{os.uname().nodename} ({host_tag()})"


def this_host(host: str | None) -> bool:
    """Whether a worker row's host is this one (a bare hostname: a row from before the tag)."""
    return host in (HOST, os.uname().nodename)


def host_names(names: list[str], root: Path | str) -> list[str]:
    """`names` prefixed with `<hostname>-<tag>-`, e.g. `build-3f2a-worker-1`."""
    prefix = f"{os.uname().nodename}-{host_tag(root)}"
    return [f"{prefix}-{name}" for name in names]
