"""A real HTTP receiver on loopback for notification tests: apprise's `json://` target.

It records every POST (parsed JSON) and answers as told: 200, 500 for the first `fail_first`
requests (or always), or holds each request open until `release()` (or `hang_for` seconds).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, *, fail_first: int = 0, always_fail: bool = False, hang_for: float = 0.0):
        self.fail_first, self.always_fail, self.hang_for = fail_first, always_fail, hang_for
        self.requests: list[dict[str, Any]] = []  # every request seen, answered or not
        self.delivered: list[dict[str, Any]] = []  # the ones answered 200
        self.changed = threading.Condition()
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(body)
                except ValueError:
                    payload = {"raw": body.decode("utf-8", "replace")}
                payload["_path"] = self.path
                with owner.changed:
                    owner.requests.append(payload)
                    seen = len(owner.requests)
                    owner.changed.notify_all()
                if owner.hang_for:
                    owner._release.wait(owner.hang_for)
                failing = owner.always_fail or seen <= owner.fail_first
                code = 500 if failing else 200
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:  # the sender gave up waiting
                    return
                if not failing:
                    with owner.changed:  # in the order the requests came, not the answers
                        owner.delivered.append(payload)
                        owner.delivered.sort(key=owner.requests.index)
                        owner.changed.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def wait_for(self, count: int, *, delivered: bool = True, timeout: float = 60.0) -> list:
        """Block until `count` requests were seen (or delivered); a guard, not a timing."""
        with self.changed:
            items = self.delivered if delivered else self.requests
            self.changed.wait_for(lambda: len(items) >= count, timeout)
            return list(items)

    def release(self) -> None:
        self._release.set()

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
