"""Inside the sandbox: relay loopback TCP to the host's network gate, then run the agent.

    python -I -S bridge.py --socket PATH [--port 3128] [--forward PORT=HOST:PORT ...] -- ARGV...

The namespace (`bwrap --unshare-net`) has only `lo`. This process listens on
127.0.0.1:<port> and relays every connection byte for byte to the unix socket PATH, where the
host's `NetworkGate` speaks HTTP proxy (`ralph/sandbox/network.py`): clients find it through
`HTTPS_PROXY`. Each `--forward PORT=TARGET` also listens on 127.0.0.1:PORT (and [::1]:PORT when
the namespace has IPv6) and forwards transparently: it sends `CONNECT TARGET` to the gate, then
relays, so a client that goes straight to an allowed `http://127.0.0.1:PORT` reaches the host's
server there. All listeners are bound before the agent starts, so its first connect succeeds.

The agent is our child in our process group and session (no setsid/setpgid), so whatever
addresses the group or the attempt's `RALPH_ATTEMPT` marker (ralph's supervisor does both)
reaches it directly. A signal sent to this process alone is passed on to the agent. When the
agent exits we exit with its code (128+N if a signal N ended it: what bwrap reports for a child
a signal ended). We are one more process in the sandbox and never outlive the agent: listener
threads are daemons.

Stdlib only, no ralph import, run as a file with `-I -S`, and built on the C modules
`_socket`, `_signal` and `_thread`: `socket` and `signal` import `enum` and `selectors`, which
took 15 ms of a 28 ms start here (bench/bench_sandbox_net.py measures what is left).
"""

import _signal
import _socket
import _thread
import os
import sys
import time

CHUNK = 64 * 1024
HEAD_MAX = 16 * 1024
CONNECT_TIMEOUT = 30.0
FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
             _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGCONT)  # fmt: skip
# reset to the default in the agent: Python ignores SIGPIPE/SIGXFSZ, and an ignored signal
# would stay ignored across exec (subprocess's restore_signals does the same)
DEFAULTED = (_signal.SIGPIPE, _signal.SIGXFSZ, *FORWARDED)
USAGE = "usage: bridge.py --socket PATH [--port N] [--forward PORT=HOST:PORT ...] -- ARGV..."
Socket = _socket.socket


class Gate:
    """Connects to the host's gate socket (a long path through its directory's fd)."""

    def __init__(self, path: str):
        self.path = path
        if len(os.fsencode(path)) > 107:  # sun_path's limit
            self.dirfd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
            self.path = f"/proc/self/fd/{self.dirfd}/{os.path.basename(path)}"

    def connect(self) -> Socket:
        sock = Socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        return sock


def shut(sock: Socket, how: int) -> None:
    """shutdown() that ignores a socket already gone."""
    try:
        sock.shutdown(how)
    except OSError:
        return


def pump(src: Socket, dst: Socket, done: _thread.LockType | None = None) -> None:
    """Copy src to dst until src ends, then half-close dst; on an error end both ways."""
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
        shut(dst, _socket.SHUT_WR)
    except OSError:
        shut(src, _socket.SHUT_RDWR)
        shut(dst, _socket.SHUT_RDWR)
    finally:
        if done is not None:
            done.release()


def tunnel(gate: Socket, client: Socket, target: str) -> bool:
    """Ask the gate for a tunnel to target; True once it answered 200 (whatever the far end
    already sent after that answer is passed on to the client)."""
    gate.settimeout(CONNECT_TIMEOUT)
    gate.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = gate.recv(HEAD_MAX)
        if not chunk or len(data) > HEAD_MAX:
            return False
        data += chunk
    gate.settimeout(None)
    head, _, rest = data.partition(b"\r\n\r\n")
    if head.split(b"\r\n", 1)[0].split(b" ")[1:2] != [b"200"]:
        return False
    if rest:
        client.sendall(rest)
    return True


def relay(client: Socket, gates: Gate, target: str | None) -> None:
    """One client connection: to the gate (through a tunnel to target if given), both ways."""
    gate = None
    try:
        gate = gates.connect()
        if target is None or tunnel(gate, client, target):
            back = _thread.allocate_lock()
            back.acquire()
            _thread.start_new_thread(pump, (gate, client, back))
            pump(client, gate)
            back.acquire()  # the other direction is over too
    except OSError:
        pass
    finally:
        client.close()
        if gate is not None:
            gate.close()


def serve(listener: Socket, gates: Gate, target: str | None) -> None:
    while True:
        try:
            fd, _ = listener._accept()
        except OSError:  # e.g. ECONNABORTED, EMFILE: the listener lives as long as we do
            time.sleep(0.05)
            continue
        _thread.start_new_thread(relay, (Socket(fileno=fd), gates, target))


def listen(host: str, port: int) -> Socket:
    family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
    sock = Socket(family, _socket.SOCK_STREAM)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def parse(args: list[str]) -> tuple[str, int, list[tuple[int, str]], list[str]]:
    """(socket path, proxy port, forwards, agent argv); SystemExit(2) on a bad command line."""
    path, port, forwards = None, 3128, []
    try:
        end = args.index("--")
        opts, argv = args[:end], args[end + 1 :]
        it = iter(opts)
        for opt in it:
            value = next(it)
            if opt == "--socket":
                path = value
            elif opt == "--port":
                port = int(value)
            elif opt == "--forward":
                fport, target = value.split("=", 1)
                forwards.append((int(fport), target))
            else:
                raise ValueError(opt)
    except (ValueError, StopIteration):
        path = None
    if path is None or not argv:
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    return path, port, forwards, argv


def main(args: list[str]) -> int:
    path, port, forwards, argv = parse(args)
    gates = Gate(path)
    servers: list[tuple[Socket, str | None]] = []
    try:
        servers.append((listen("127.0.0.1", port), None))
        for fport, target in forwards:
            servers.append((listen("127.0.0.1", fport), target))
            try:  # a client that resolves localhost to ::1 first; no IPv6 here is fine
                servers.append((listen("::1", fport), target))
            except OSError:
                continue
    except OSError as exc:
        print(f"ralph sandbox bridge: cannot listen on loopback: {exc}", file=sys.stderr)
        return 125

    child = 0
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if not child:
            pending.append(signum)
            return
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            return  # exited already; waitpid() has its status

    for sig in FORWARDED:
        _signal.signal(sig, forward)
    try:
        child = os.posix_spawnp(argv[0], argv, os.environ, setsigdef=DEFAULTED)
    except OSError as exc:
        print(f"ralph sandbox bridge: cannot start {argv[0]}: {exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    for signum in pending:
        forward(signum, None)
    for listener, target in servers:
        _thread.start_new_thread(serve, (listener, gates, target))
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(main(sys.argv[1:]))
