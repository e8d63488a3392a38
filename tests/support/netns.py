"""A host as a Linux network namespace joined to this one by a veth pair (iproute2, root).

    with NetNs() as ns:                      # None-safe: NetNs.available() says if it can work
        ns.argv(["python", "x.py"])          # the command run inside the namespace
        ns.cut()                             # the link goes silent: no error, no packet

Inside, the host reaches this namespace at `ns.outer_ip`. `cut()` takes the outer end of the
veth down: the inner end loses its carrier and its packets are dropped without an error, as
a pulled cable or a dead switch would, so only TCP timeouts (keepalives, tcp_user_timeout)
can tell the processes inside that the other side is gone.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


class NetNs:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name, self.outer, self.inner = f"rt{tag}", f"rt{tag}a", f"rt{tag}b"
        net = f"10.{16 + secrets.randbelow(200)}.{secrets.randbelow(256)}"
        self.outer_ip, self.inner_ip = f"{net}.1", f"{net}.2"

    @staticmethod
    def available() -> str | None:
        """None when namespaces can be made here, else why not."""
        if shutil.which("ip") is None:
            return "iproute2's ip is not installed"
        probe = NetNs()
        made = _ip("netns", "add", probe.name)
        if made.returncode != 0:
            return f"ip netns add failed: {made.stderr.strip()}"
        _ip("netns", "del", probe.name)
        return None

    def __enter__(self) -> NetNs:
        steps = [
            ["netns", "add", self.name],
            ["link", "add", self.outer, "type", "veth", "peer", "name", self.inner],
            ["link", "set", self.inner, "netns", self.name],
            ["addr", "add", f"{self.outer_ip}/30", "dev", self.outer],
            ["link", "set", self.outer, "up"],
            ["-n", self.name, "addr", "add", f"{self.inner_ip}/30", "dev", self.inner],
            ["-n", self.name, "link", "set", self.inner, "up"],
            ["-n", self.name, "link", "set", "lo", "up"],
        ]
        for step in steps:
            done = _ip(*step)
            if done.returncode != 0:
                self.__exit__()
                raise RuntimeError(f"ip {' '.join(step)}: {done.stderr.strip()}")
        return self

    def __exit__(self, *exc: object) -> None:
        _ip("link", "del", self.outer)
        _ip("netns", "del", self.name)

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        done = _ip("link", "set", self.outer, "down")
        if done.returncode != 0:
            raise RuntimeError(f"cannot cut {self.outer}: {done.stderr.strip()}")
