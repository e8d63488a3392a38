"""Who may use the dashboard: reads open on loopback, changes only for a logged-in session.

The token `ralph web` prints (in its login link) is the write credential, and no page carries
it: before, every page embedded it as the CSRF token, so any local process could read a page
and then add tasks with curl. Now `/login?token=...` opens a session: an HttpOnly,
SameSite=Strict cookie (Secure over TLS) naming a random session id, with its own CSRF token
that only that session's pages carry. A change needs the session cookie and its CSRF token (in
the form or the X-Ralph-Token header), or the token itself as `Authorization: Bearer` (scripts;
a browser never sends that header on its own). Off loopback every read needs a session too.

Task text and agent output are untrusted, so pages carry a Content-Security-Policy that allows
no inline script or style; templates escape everything (jinja2 autoescape) and the page's own
JS writes text with textContent only.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ralph.errors import ConfigError

COOKIE = "ralph_web"
CSRF_HEADER = "x-ralph-token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
MAX_SESSIONS = 256  # logins kept; the oldest is forgotten (it logs in again) beyond this
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Any]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0 included) is reachable by others."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Guard:
    """The server's access rules: the token, whether reads need it, and the hosts it answers as."""

    token: str
    open_reads: bool  # loopback: anyone on this machine may look; changes still need the token
    read_only: bool = False
    allowed_hosts: set[str] = field(default_factory=set)

    @classmethod
    def for_bind(cls, host: str, port: int, token: str | None, *, read_only: bool) -> Guard:
        """Loopback binds need no token to read (one is made for the CSRF check); any other
        address needs one given, or the server refuses to start."""
        if is_loopback(host):
            names = {"localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"}
            allowed = {f"{n}:{port}" for n in names} | names
            return cls(
                token or new_token(), open_reads=True, read_only=read_only, allowed_hosts=allowed
            )
        if not token:
            raise ConfigError(
                f"refusing to serve on {host}: a non-loopback address needs a token",
                hint="pass --token TOKEN (or --token generate), set RALPH_WEB_TOKEN, "
                "or bind to 127.0.0.1",
            )
        return cls(token, open_reads=False, read_only=read_only)

    sessions: dict[str, str] = field(default_factory=dict)  # session id -> its CSRF token

    def matches(self, given: str | None) -> bool:
        return _same(given, self.token)

    def open_session(self) -> str:
        """A new session id (the cookie's value); its CSRF token is `self.sessions[id]`."""
        session = new_token()
        self.sessions[session] = new_token()
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        return session

    def csrf_of(self, session: str | None) -> str | None:
        """The CSRF token of a logged-in session, None for anyone else."""
        return self.sessions.get(session) if session else None


def _same(given: str | None, expected: str | None) -> bool:
    return (
        bool(given)
        and bool(expected)
        and hmac.compare_digest(str(given).encode(), str(expected).encode())
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def cookie_token(scope: Scope) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None


class GuardMiddleware:
    """ASGI middleware: host check, login by `?token=`, token on reads off loopback, token and
    same-origin on every change, and the security headers on every response."""

    def __init__(self, app: ASGIApp, guard: Guard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = self.guard
        method = scope["method"]
        host = _header(scope, b"host") or ""
        if guard.allowed_hosts and host not in guard.allowed_hosts:
            # A DNS-rebinding page on another name must not read a loopback dashboard.
            await _deny(send, 421, "unknown host name")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        login = query.get("token", [None])[0]
        if method == "GET" and login is not None and scope["path"] == "/login":
            if guard.matches(login):
                secure = scope.get("scheme") == "https"
                await _redirect_with_cookie(send, guard.open_session(), secure=secure)
            else:
                await _deny(send, 403, "wrong token")
            return
        csrf = guard.csrf_of(cookie_token(scope))
        bearer = guard.matches(
            (_header(scope, b"authorization") or "").removeprefix("Bearer ").strip()
        )
        authed = csrf is not None or bearer
        if not guard.open_reads and not authed and not scope["path"].startswith("/static/"):
            await _deny(send, 401, "log in with /login?token=TOKEN (the link `ralph web` printed)")
            return
        # What the pages of this request may carry: the session's CSRF token, nothing else.
        state = scope.setdefault("state", {})
        state["csrf"] = csrf
        if method not in SAFE_METHODS:
            if guard.read_only:
                await _deny(send, 403, "this dashboard is read-only (started with --read-only)")
                return
            if not authed:
                await _deny(send, 401, "changes need a login: open the link `ralph web` printed")
                return
            if not self._same_origin(scope, host):
                await _deny(send, 403, "cross-origin request refused")
                return
            # A bearer token is not sent by browsers on their own: no CSRF token needed. A
            # session's CSRF token rides in a header (fetch), checked here, or a form field,
            # checked by the endpoint against `csrf_expected`.
            state["csrf_expected"] = None if bearer else csrf
            state["csrf_header"] = bearer or _same(_header(scope, CSRF_HEADER.encode()), csrf)
        await self.app(scope, receive, _with_headers(send))

    @staticmethod
    def _same_origin(scope: Scope, host: str) -> bool:
        origin = _header(scope, b"origin") or _header(scope, b"referer")
        if not origin:
            return True  # not a browser (curl with the token); the token check still applies
        return urlsplit(origin).netloc == host


def _with_headers(send: Any) -> Any:
    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            names = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in HEADERS if k not in names]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


async def _deny(send: Any, status: int, why: str) -> None:
    body = f"{status}: {why}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": body})


def csrf_ok(state: MutableMapping[str, Any], given: str | None) -> bool:
    """For the endpoint of a change: the header was right, or the form field is."""
    return bool(state.get("csrf_header")) or _same(given, state.get("csrf_expected"))


async def _redirect_with_cookie(send: Any, session: str, *, secure: bool) -> None:
    flags = "; Secure" if secure else ""
    cookie = f"{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/{flags}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", b"/"), (b"set-cookie", cookie), *HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def read_form(request: Any) -> dict[str, str]:
    """An urlencoded body as a dict (first value of each field); bodies over 1 MB are cut."""
    body = await request.body()
    fields = parse_qs(body[:1_000_000].decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}
