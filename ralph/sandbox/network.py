"""The sandbox's network gate: an allow-list HTTP proxy on the host, reached over a unix socket.

With `[sandbox] network = "allow"` the agent runs under `bwrap --unshare-net`: its namespace
has only `lo`, so no packet can leave it directly (there is no route). The one way out is a unix
socket in the attempt's directory, bound into the sandbox. On the host, `NetworkGate` listens on
it and speaks HTTP proxy: `CONNECT host:port` (every HTTPS client behind `HTTPS_PROXY`) and
absolute-URI plain HTTP (`GET http://host:port/path`). It checks `host:port` against the allow
list *before* resolving anything, connects from the host, and splices bytes both ways; a denied
destination gets a 403 and the line "sandbox: denied connect to host:port" in the attempt's log.

Inside, `ralph/sandbox/bridge.py` (see `bridge_argv`) is the sandbox's first process: it listens
on 127.0.0.1:<proxy_port> and relays each connection byte for byte to the socket, and for every
allowed loopback `host:port` it listens on that port in the namespace too and forwards it
transparently (it sends the CONNECT itself), so a CLI whose base URL is `http://127.0.0.1:8080`
works whether or not it sends loopback through the proxy. `proxy_env` gives the variables that
point the agent at the bridge.

Use, per attempt: `gate = NetworkGate(allow, <attempt dir>/net.sock, log)`, `gate.start()`;
run `bwrap ... --unshare-net --ro-bind <sock> <sock> ... -- *bridge_argv(sock, allow), *agent`
with `proxy_env()` in the agent's environment (a read-only bind is enough to connect);
`gate.close()` once the attempt is over. `sys.executable` and this package's directory must be
readable inside. Leave out bwrap's `--as-pid-1`: bwrap's own init reaps orphans, the bridge
does not.

Allow entries (host names compare case-insensitively, a trailing dot ignored):
- `"example.com"`: that host on its web ports, 443 and 80 (HTTPS, and plain HTTP that usually
  redirects to it); no other port.
- `"example.com:8443"`: that host on that port only.
- `"*.example.com"` / `"*.example.com:8443"`: any name ending in `.example.com` (not
  `example.com` itself; list it too if it is wanted), on 443/80 or on the given port.
- `"127.0.0.1:8080"`, `"localhost:8080"`, `"[::1]:8080"`: loopback is one host here: a loopback
  entry allows `localhost`, `127.x.x.x` and `::1` on its port, since clients spell it any way.
- An IP address matches only that address: a name that resolves to it is not allowed by it.
- A name may resolve to an address only this machine reaches (loopback, link-local such as
  169.254.169.254, unspecified) only if the list names that address and port too: otherwise a
  wildcard entry whose DNS someone controls would open the host's own ports (the store's
  PostgreSQL, the dashboard) or a cloud's metadata service. Numeric tricks (`2130706433`,
  `0x7f.1`, `::ffff:127.0.0.1`) are names or mapped addresses and meet the same check.

Bounds: a request head must arrive within `HEAD_TIMEOUT` and fit in `MAX_HEAD` bytes; a connect
gets `CONNECT_TIMEOUT`; at most `MAX_CONNECTIONS` tunnels are open at once (the next request
gets a 503; beyond `SPARE` more waiting requests a connection is closed at once); each direction
moves `CHUNK` bytes at a time, so memory stays bounded. An open tunnel has no idle limit (a
model's stream may be quiet for minutes): it ends when either side closes it, or at `close()`,
which shuts every socket and joins every thread (a connect in flight ends within its timeout).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

DEFAULT_PORTS = (443, 80)  # what a bare host in the allow list opens
PROXY_PORT = 3128
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
MAX_HEAD = 64 * 1024
MAX_CONNECTIONS = 256
SPARE = 16  # requests read (and answered 503) while MAX_CONNECTIONS tunnels are open
CHUNK = 64 * 1024
SUN_PATH_MAX = 107  # bytes of a unix socket path the kernel takes (sun_path is 108 with the NUL)
BRIDGE = Path(__file__).with_name("bridge.py")
HOST_RE = re.compile(r"[a-z0-9_.:%-]+")  # names, IPv4, IPv6 (with a zone); nothing to inject
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"}


@dataclass(frozen=True)
class Rule:
    """One allow-list entry: a host (or `*.suffix`) and a port (None: `DEFAULT_PORTS`)."""

    host: str
    port: int | None
    suffix: bool = False

    def matches(self, host: str, port: int) -> bool:
        if port not in ((self.port,) if self.port is not None else DEFAULT_PORTS):
            return False
        if self.suffix:
            return host.endswith("." + self.host)
        if is_loopback(self.host):
            return is_loopback(host)
        return host == self.host


def normal_host(host: str) -> str:
    """A host as rules compare it: lower case, no brackets, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """host as an IP address (an IPv4-mapped IPv6 one as its IPv4 address), or None."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    ip = address(host)
    return host == "localhost" or (ip is not None and ip.is_loopback)


def is_host_only(host: str) -> bool:
    """True for addresses that reach this machine or its link only (loopback, link-local such
    as a cloud's metadata service at 169.254.169.254, unspecified): a name allowed by the list
    may resolve to one only if the list allows that address too."""
    ip = address(host)
    return ip is not None and (ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def split_host_port(text: str, default: int | None = None) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port`, or a bare v6 address -> (host, port or default).

    Raises ValueError for a host with characters no host name or address has (an empty one,
    `*`, `@`, `/`, control characters) or a port that is not 1-65535."""
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text  # a name, or an IPv6 address without brackets (no port then)
    host = normal_host(host)
    if not HOST_RE.fullmatch(host):
        raise ValueError(f"bad host in {text!r}")
    if port_text is None:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in {text!r}")
    return host, int(port_text)


def parse_rule(entry: str) -> Rule:
    """One allow-list entry as a Rule; ValueError says what is wrong with it."""
    suffix = entry.strip().startswith("*.")
    try:
        host, port = split_host_port(entry.strip()[2:] if suffix else entry)
    except ValueError:
        raise ValueError(f"allow entry {entry!r}: use 'host', 'host:port' or '*.domain'") from None
    return Rule(host, port, suffix)


def parse_allow(allow: list[str]) -> list[Rule]:
    return [parse_rule(entry) for entry in allow]


def allowed(rules: list[Rule], host: str, port: int) -> bool:
    host = normal_host(host)
    return any(rule.matches(host, port) for rule in rules)


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def loopback_forwards(rules: list[Rule]) -> list[tuple[int, str]]:
    """(port, CONNECT target) for each allowed loopback host:port, one per port: the ports the
    bridge listens on inside the namespace and forwards transparently."""
    seen: dict[int, str] = {}
    for rule in rules:
        if rule.port is not None and not rule.suffix and is_loopback(rule.host):
            seen.setdefault(rule.port, hostport(rule.host, rule.port))
    return sorted(seen.items())


def bridge_argv(socket_path: str, allow: list[str], proxy_port: int = PROXY_PORT) -> list[str]:
    """argv prefix run INSIDE the sandbox before the agent's argv: the bridge, then `--`.

    The bridge runs as a script with `-I -S` (no site, no PYTHON* variables, no ralph import):
    it starts in a few milliseconds and the agent's environment cannot change it. Its file
    (this package's directory) and `sys.executable` must be readable inside the sandbox."""
    argv = [sys.executable, "-I", "-S", str(BRIDGE), "--socket", str(socket_path)]
    argv += ["--port", str(proxy_port)]
    for port, target in loopback_forwards(parse_allow(allow)):
        if port == proxy_port:
            raise ValueError(f"allow entry {target} uses the sandbox proxy's port {proxy_port}")
        argv += ["--forward", f"{port}={target}"]
    return [*argv, "--"]


def proxy_env(proxy_port: int = PROXY_PORT) -> dict[str, str]:
    """The variables that send an agent's HTTP(S) through the bridge; NO_PROXY is cleared so a
    host's own exceptions do not make a client try (and fail) a direct connection."""
    url = f"http://127.0.0.1:{proxy_port}"
    env: dict[str, str] = {}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = url
    env["NO_PROXY"] = env["no_proxy"] = ""
    return env


@contextlib.contextmanager
def unix_path(path: Path) -> Iterator[str]:
    """`path` as something bind()/connect() accept: a long path goes through its directory's
    file descriptor (`/proc/self/fd/N/name`), since sun_path holds only 107 bytes."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def reply(status: str, text: str) -> bytes:
    """A short HTTP response that ends the connection."""
    body = text.encode() + b"\n"
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


def read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """The request head up to its blank line, and what came after it; None if it does not
    arrive whole within MAX_HEAD bytes (the socket's timeout bounds the wait)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        chunk = sock.recv(CHUNK)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def origin_request(head: bytes, method: str, url: str, version: str) -> tuple[str, int, bytes]:
    """(host, port, head for the origin server) of an absolute-URI request: origin-form target,
    proxy headers dropped, `Connection: close` (the next request may be for another host)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(url)
    host, port = split_host_port(parts.netloc, 80)
    assert port is not None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target} {version}".encode()]
    has_host = False
    for line in head.split(b"\r\n")[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        has_host = has_host or name == b"host"
        if name not in HOP_BY_HOP:
            lines.append(line)
    if not has_host:
        lines.append(b"Host: " + parts.netloc.encode())
    lines.append(b"Connection: close")
    return host, port, b"\r\n".join(lines) + b"\r\n\r\n"


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy src to dst until src ends, then half-close dst; on an error end both ways."""
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def splice(a: socket.socket, b: socket.socket, name: str) -> None:
    """Relay both ways until both directions have ended (one thread more, for b -> a)."""
    back = threading.Thread(target=pump, args=(b, a), name=name, daemon=True)
    back.start()
    pump(a, b)
    back.join()


class NetworkGate:
    """The host side of one attempt's network: an allow-list proxy on a unix socket.

    `log` gets one line per denied or failed connect, called from the gate's threads."""

    def __init__(self, allow: list[str], socket_path: Path, log: Callable[[str], None]):
        self.rules = parse_allow(allow)  # ValueError for a malformed entry, before any socket
        self.socket_path = Path(socket_path)
        self.log = log
        self._lock = threading.Lock()
        self._closed = False
        self._socks: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._tunnels = 0  # upstream connections open or being opened
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        """Listen on the socket (owner-only) and serve it from a thread."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            with unix_path(self.socket_path) as path:
                listener.bind(path)
            os.chmod(self.socket_path, 0o600)
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, name="ralph-netgate", daemon=True)
        self._acceptor.start()

    def close(self) -> None:
        """Stop listening, end every connection, join every thread, remove the socket."""
        with self._lock:
            self._closed = True
            socks = list(self._socks)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._acceptor is not None:
            self._acceptor.join()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(CONNECT_TIMEOUT + HEAD_TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def __enter__(self) -> NetworkGate:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # shut down by close()
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                full = len(self._threads) >= MAX_CONNECTIONS + SPARE
                if not full:
                    t = threading.Thread(
                        target=self._serve, args=(conn,), name="ralph-netgate-conn", daemon=True
                    )
                    self._threads.add(t)
                    self._socks.add(conn)
            if full:
                conn.close()
            else:
                t.start()

    def _track(self, sock: socket.socket) -> bool:
        """Register a socket for close() to shut; False (and closed) once the gate is closing."""
        with self._lock:
            if not self._closed:
                self._socks.add(sock)
                return True
        sock.close()
        return False

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            conn.settimeout(HEAD_TIMEOUT)
            upstream = self._open(conn)
            if upstream is not None:
                conn.settimeout(None)
                upstream.settimeout(None)
                splice(conn, upstream, "ralph-netgate-conn")
        except OSError:
            pass  # the client went away or timed out; nothing to report
        finally:
            with self._lock:
                if upstream is not None:
                    self._tunnels -= 1
                self._threads.discard(threading.current_thread())
                for s in (conn, upstream):
                    self._socks.discard(s)  # type: ignore[arg-type]
            for s in (conn, upstream):
                if s is not None:
                    s.close()

    def _open(self, conn: socket.socket) -> socket.socket | None:
        """Read one proxy request, check it, connect; the upstream socket, or None when the
        client got an error reply instead."""
        got = read_head(conn)
        if got is None:
            conn.sendall(reply("400 Bad Request", "sandbox: incomplete request"))
            return None
        head, rest = got
        try:
            method, target, version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method == "CONNECT":
                host, port = split_host_port(target)
                forward = rest
            else:
                host, port, origin = origin_request(head, method, target, version)
                forward = origin + rest
            if port is None:
                raise ValueError(target)
        except ValueError:
            conn.sendall(reply("400 Bad Request", "sandbox: not a proxy request"))
            return None
        where = hostport(host, port)
        if not allowed(self.rules, host, port):
            self.log(f"sandbox: denied connect to {where}")
            conn.sendall(reply("403 Forbidden", f"sandbox: denied connect to {where}"))
            return None
        with self._lock:
            busy = self._tunnels >= MAX_CONNECTIONS
            if not busy:
                self._tunnels += 1
        if busy:
            conn.sendall(reply("503 Service Unavailable", "sandbox: too many connections"))
            return None
        upstream = self._connect(host, port)
        if not upstream:
            with self._lock:
                self._tunnels -= 1
        if upstream is False:
            conn.sendall(reply("403 Forbidden", f"sandbox: denied connect to {where}"))
            return None
        if upstream is None:
            conn.sendall(reply("502 Bad Gateway", f"sandbox: cannot connect to {where}"))
            return None
        if method == "CONNECT":
            conn.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        if forward:
            upstream.sendall(forward)
        return upstream

    def _connect(self, host: str, port: int) -> socket.socket | None | Literal[False]:
        """Connect from the host to the first address of host:port that answers; False when
        every address it resolves to is one only this machine reaches and the list does not
        allow it (a wildcard name pointed at 127.0.0.1 must not open the host's own ports)."""
        error: OSError | None = None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            infos, error = [], exc
        refused = [
            i for i in infos if is_host_only(i[4][0]) and not allowed(self.rules, i[4][0], port)
        ]
        infos = [i for i in infos if i not in refused]
        if refused and not infos:
            self.log(
                f"sandbox: denied connect to {hostport(host, port)}"
                f" (it resolves to {refused[0][4][0]}, which the allow list does not name)"
            )
            return False
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            if not self._track(sock):
                return None
            try:
                sock.settimeout(CONNECT_TIMEOUT)
                sock.connect(addr)
                return sock
            except OSError as exc:
                error = exc
                with self._lock:
                    self._socks.discard(sock)
                sock.close()
        self.log(f"sandbox: cannot connect to {hostport(host, port)}: {error}")
        return None
