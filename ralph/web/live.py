"""Live updates: one poller reads new rows of the events table and fans them out to every open
Server-Sent Events stream; a running attempt's output is streamed from its run folder.

One poller for all browsers keeps the database load independent of how many tabs are open; each
poll is one short read transaction (`events(after=...)`), so workers are never held up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread

from ralph.ops import logs
from ralph.store.base import SQLStore
from ralph.web.views import event_dict

POLL_SECONDS = 0.2  # event to screen well under a second
KEEPALIVE_SECONDS = 15.0
BATCH = 500
CATCH_UP_BATCHES = 4  # a tab further behind than this many events redraws instead of replaying
IDLE_SECONDS = 1.0


def sse(data: Any, *, event: str | None = None, id: int | None = None) -> bytes:
    """One Server-Sent Events message (JSON data on one line)."""
    head = (f"event: {event}\n" if event else "") + (f"id: {id}\n" if id is not None else "")
    return (head + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


class EventHub:
    """Polls the events table and hands each new event to every subscriber's queue."""

    def __init__(self, store: SQLStore, poll: float = POLL_SECONDS):
        self.store = store
        self.poll = poll
        self.last = 0
        self.subscribers: set[asyncio.Queue[list[dict[str, Any]]]] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        recent = await anyio.to_thread.run_sync(self.store.recent_events, 1)
        self.last = recent[-1].id if recent else 0
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        idle = 0.0
        while True:
            full = False
            try:
                if self.subscribers:
                    events = await anyio.to_thread.run_sync(self._fetch)
                    full = len(events) == BATCH
                    if events:
                        self.last = events[-1]["id"]
                        for queue in list(self.subscribers):
                            if queue.full():  # a stalled tab: drop it, it reconnects
                                self.subscribers.discard(queue)
                            else:
                                queue.put_nowait(events)
                elif idle >= IDLE_SECONDS:
                    # Nobody is watching: only keep up with where the log ends, so the first
                    # tab that opens does not wait for a backlog to be read.
                    idle = 0.0
                    recent = await anyio.to_thread.run_sync(self.store.recent_events, 1)
                    self.last = recent[-1].id if recent else self.last
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away for a moment: try again next poll
                await asyncio.sleep(1.0)
            if not full:  # a full batch means more are waiting: read on at once
                await asyncio.sleep(self.poll)
                idle += self.poll

    def _fetch(self) -> list[dict[str, Any]]:
        return self._since(self.last)

    def _since(self, after: int) -> list[dict[str, Any]]:
        return [event_dict(e) for e in self.store.events(after=after, limit=BATCH)]

    async def stream(self, after: int) -> AsyncIterator[bytes]:
        """Events after `after` (those missed since the page was drawn), then live ones."""
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue(maxsize=1000)
        self.subscribers.add(queue)
        try:
            yield b"retry: 1000\n\n"
            sent = after
            for _ in range(CATCH_UP_BATCHES if after else 0):
                missed = await anyio.to_thread.run_sync(self._since, sent)
                for item in missed:
                    sent = item["id"]
                    yield sse(item, event="ralph", id=item["id"])
                if len(missed) < BATCH:
                    break
            else:
                if after:  # too far behind to replay: the page redraws what it shows instead
                    sent = max(sent, self.last)
                    yield sse({"last": sent}, event="reset", id=sent)
            while True:
                try:
                    batch = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                for item in batch:
                    if item["id"] > sent:
                        sent = item["id"]
                        yield sse(item, event="ralph", id=item["id"])
        finally:
            self.subscribers.discard(queue)


async def follow_transcript(
    run_dir: Path, offset: int, poll: float = 0.3, timeout: float = 6 * 3600
) -> AsyncIterator[bytes]:
    """The turns an agent prints from byte `offset` of its stdout on, until the attempt's
    `result.json` appears (then an `end` message)."""
    partial = b""
    deadline = time.monotonic() + timeout
    yield b"retry: 2000\n\n"
    idle = 0.0
    while time.monotonic() < deadline:
        finished = (run_dir / "result.json").exists()  # checked before reading: no lost tail
        chunk = await anyio.to_thread.run_sync(_read_from, run_dir / "stdout", offset)
        offset += len(chunk)
        *complete, partial = (partial + chunk).split(b"\n")
        turns = [
            t.to_dict()
            for raw in complete
            for t in logs.line_turns(raw.decode("utf-8", errors="replace"))
        ]
        if finished and partial:
            turns += [t.to_dict() for t in logs.line_turns(partial.decode("utf-8", "replace"))]
        if turns:
            yield sse({"turns": turns, "offset": offset - len(partial)}, event="turns")
            idle = 0.0
        if finished:
            yield sse({"done": True}, event="end")
            return
        await asyncio.sleep(poll)
        idle += poll
        if idle >= KEEPALIVE_SECONDS:
            idle = 0.0
            yield b": keepalive\n\n"


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return b""
