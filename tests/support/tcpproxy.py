"""A TCP proxy that can drop a link silently: a network partition between one host and a server.

    proxy = Proxy("127.0.0.1", pg_port)        # forwards 127.0.0.1:proxy.port -> the server
                                               # (listen="10.0.0.1": on another address)
    proxy.cut_in_transaction()                 # cut once a transaction holds its first locks
    proxy.cut_now()                            # or cut at once
    proxy.cut.wait(60); proxy.cut_at           # the moment it happened (time.time())
    proxy.restore()                            # the link is back (connections from before it reset)

A cut stops forwarding in both directions without closing anything: both ends see a peer
that has gone quiet, as in a real partition (the server keeps the session, its transaction
and row locks). New connections made during a cut are accepted and then hang, as a SYN into
a dead link would. `restore()` resets every connection that lived through the cut (after a
real partition their TCP state would be lost too) and lets new ones through.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

CHUNK = 65536
BEGIN = b"BEGIN"
SYNC = b"S\x00\x00\x00\x04"  # the protocol's Sync message: the client now waits for results


class Proxy:
    """Forward connections on 127.0.0.1:<port> to (host, port) until closed."""

    def __init__(self, host: str, port: int, listen: str = "127.0.0.1"):
        self.target = (host, port)
        self.listen = listen
        self.listener = socket.create_server((listen, 0))
        self.port = int(self.listener.getsockname()[1])
        self.cut = threading.Event()  # set while the link is down
        self.cut_at: float | None = None
        self.cuts = 0
        self._flowing = threading.Event()
        self._flowing.set()
        self._trigger: tuple[bytes, ...] = ()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def url(self, url: str) -> str:
        """`url` (postgresql://user@127.0.0.1:PORT/db) pointed at this proxy instead."""
        return url.replace(f"127.0.0.1:{self.target[1]}/", f"{self.listen}:{self.port}/", 1)

    # -- control -----------------------------------------------------------------------------
    def cut_after(self, *markers: bytes) -> None:
        """Cut right after forwarding the client data in which one connection has sent
        `markers` in that order (each may share a chunk with the one before)."""
        with self._lock:
            self._trigger = markers

    def cut_in_transaction(self) -> None:
        """Cut once a transaction's first query whose rows the client reads reached the
        server (ralph's store sends a Sync with each read): its row locks are held by then."""
        self.cut_after(BEGIN, SYNC)

    def cut_now(self) -> None:
        with self._lock:
            self._cut()

    def _cut(self) -> None:
        if not self.cut.is_set():
            self._flowing.clear()
            self.cut_at = time.time()
            self.cuts += 1
            self.cut.set()

    def restore(self) -> None:
        """End the partition: connections that lived through it are reset, new ones flow."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self._trigger = ()
            self.cut.clear()
            self._flowing.set()
        for pair in pairs:
            _close(*pair)

    def close(self) -> None:
        self._closed = True
        self.restore()
        self.listener.close()

    # -- forwarding ---------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._pairs.append((client, None))
        self._flowing.wait()
        try:
            server = socket.create_connection(self.target, timeout=10)
        except OSError:
            _close(client)
            return
        server.settimeout(None)
        with self._lock:
            if (client, None) not in self._pairs:  # reset by a restore meanwhile
                _close(server)
                return
            self._pairs.remove((client, None))
            self._pairs.append((client, server))
        threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
        self._pump(server, client, False)

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        """Copy src -> dst while the link is up; during a cut read nothing, send nothing."""
        seen = 0  # how many of the armed markers this connection has sent, in order
        while True:
            self._flowing.wait()
            try:
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready:
                    if src.fileno() < 0:
                        return
                    continue
                with self._lock:
                    if not self._flowing.is_set():
                        continue  # cut meanwhile: leave the data unread
                    data = src.recv(CHUNK)
                    if not data:
                        break
                    dst.sendall(data)
                    if upstream and self._trigger:
                        seen = self._match(data, seen)
                        if seen == len(self._trigger):
                            self._trigger = ()
                            self._cut()
            except (OSError, ValueError):
                break
        _close(src, dst)

    def _match(self, data: bytes, seen: int) -> int:
        at = 0
        while seen < len(self._trigger):
            found = data.find(self._trigger[seen], at)
            if found < 0:
                break
            at, seen = found + len(self._trigger[seen]), seen + 1
        return seen


def _close(*socks: socket.socket | None) -> None:
    for sock in socks:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            with contextlib.suppress(OSError):
                sock.close()
