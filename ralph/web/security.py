"""Who may use the dashboard: loopback or a token, a CSRF check on every change, strict headers.

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

    def matches(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.token.encode())


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
                await _redirect_with_cookie(send, guard.token)
            else:
                await _deny(send, 403, "wrong token")
            return
        authed = guard.matches(cookie_token(scope)) or guard.matches(
            (_header(scope, b"authorization") or "").removeprefix("Bearer ").strip()
        )
        if not guard.open_reads and not authed and not scope["path"].startswith("/static/"):
            await _deny(send, 401, "log in with /login?token=TOKEN (the token `ralph web` printed)")
            return
        if method not in SAFE_METHODS:
            if guard.read_only:
                await _deny(send, 403, "this dashboard is read-only (started with --read-only)")
                return
            if not self._same_origin(scope, host):
                await _deny(send, 403, "cross-origin request refused")
                return
            # The CSRF token rides in a header (fetch) or a form field, read by the endpoint:
            # mark the request so the endpoint checks it; headers are checked here.
            scope.setdefault("state", {})["csrf_header"] = guard.matches(
                _header(scope, CSRF_HEADER.encode())
            )
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


async def _redirect_with_cookie(send: Any, token: str) -> None:
    cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", b"/"), (b"set-cookie", cookie), *HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": b""})
