"""Notifications when an unattended run needs a person: through apprise (Slack, Discord, ntfy,
Telegram, email, generic JSON webhooks...), configured as `[notify] urls = [...]` in ralph.toml
or `RALPH_NOTIFY_URLS`.

Sending never blocks or breaks a run: `Notifier.emit` only queues the message; one background
thread sends it to each URL with a timeout, retrying a few times (tenacity). A send that still
fails is written to the events table as `notify_failed`. At the end of a run `close` waits at
most one send timeout for what is queued; whatever is left is recorded as not delivered.
apprise is imported only in the thread that sends, never on the CLI's hot path.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ralph.durations import format_duration, parse_duration
from ralph.errors import ConfigError, UsageError

EVENTS = (
    "run_finished",
    "task_failed",
    "auth_stopped",
    "breaker_tripped",
    "paused",
    "budget_reached",
    "worker_lost",
)
ENV_URLS = "RALPH_NOTIFY_URLS"
_KEYS = {"urls", "events", "pause_after", "timeout", "retries"}


@dataclass
class NotifySettings:
    """`[notify]`: where to send, which events, and how patient a send may be."""

    urls: list[str] = field(default_factory=list)
    events: list[str] | None = None  # None: every event
    pause_after: float = 600.0  # a pause shorter than this is not worth a message
    timeout: float = 10.0  # seconds per send, and the most `close` waits at the end of a run
    retries: int = 3  # sends per message and URL before it is written off as notify_failed

    def wants(self, event: str) -> bool:
        return bool(self.urls) and (self.events is None or event in self.events)


def parse_notify(table: Any, source: str = "ralph.toml") -> NotifySettings:
    """Validate a raw `[notify]` table; errors name the file and the key."""

    if not isinstance(table, dict):
        raise ConfigError(f"{source}: notify must be a table ([notify])")
    found = NotifySettings()
    for key, value in table.items():
        where = f"{source}: notify.{key}"
        if key not in _KEYS:
            raise ConfigError(
                f"{source}: unknown key 'notify.{key}'",
                hint="known keys: " + ", ".join(sorted(_KEYS)),
            )
        if key in ("urls", "events"):
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
                raise ConfigError(f"{where} must be a list of strings, got {value!r}")
            if key == "events":
                unknown = sorted(set(items) - set(EVENTS))
                if unknown:
                    raise ConfigError(
                        f"{where}: unknown event {unknown[0]!r}",
                        hint="events: " + ", ".join(EVENTS),
                    )
            setattr(found, key, list(items))
        elif key in ("pause_after", "timeout"):
            try:
                setattr(found, key, parse_duration(value, what=f"notify.{key}"))
            except UsageError as exc:
                raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from exc
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where} must be a whole number >= 1, got {value!r}")
        else:
            found.retries = value
    return found


def resolve(
    table: Mapping[str, Any] | None, source: str, env: Mapping[str, str] | None = None
) -> NotifySettings:
    """The settings of `[notify]` plus the URLs of RALPH_NOTIFY_URLS (comma or space separated)."""
    found = parse_notify(dict(table or {}), source)
    extra = (os.environ if env is None else env).get(ENV_URLS, "")
    found.urls += [u for u in extra.replace(",", " ").split() if u not in found.urls]
    return found


def shown(url: str) -> str:
    """A URL as it may be written down: scheme and host only (apprise URLs carry tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


@dataclass
class Message:
    """One notification: what happened and what to do next."""

    event: str
    title: str
    body: str
    data: dict[str, Any]
    attach: str | None = None


def _money(cost: float | None, known: bool = True) -> str:
    return f"${cost:.4f}" if known and cost is not None else "cost unknown"


def compose(event: str, data: Mapping[str, Any]) -> Message:
    """The message for `event`: a title naming it, and a body ending with the next step."""

    d = dict(data)
    if event == "run_finished":
        title = f"ralph: run finished: {d.get('done', 0)} done, {d.get('failed', 0)} failed"
        body = (
            f"{d.get('done', 0)} done, {d.get('failed', 0)} failed, {d.get('retried', 0)} to "
            f"retry, {d.get('launches', 0)} agent launches, "
            f"{_money(d.get('cost_usd'), d.get('cost_known', False))}, "
            f"{format_duration(d.get('wall_s') or 0.0)}."
            + (f"\nStopped: {d['stop_reason']}." if d.get("stop_reason") else "")
            + (f"\nReport: {d['report']}" if d.get("report") else "")
            + "\nNext: `ralph report --since 12h` says what landed and what did not."
        )
    elif event == "task_failed":
        title = f"ralph: task {d.get('task')} failed"
        body = (
            f"{d.get('task')} ended failed after its last attempt.\n"
            f"Last error: {(d.get('error') or 'none recorded').strip()[:500]}\n"
            f"Next: `ralph show {d.get('task')}` says why; "
            f"`ralph retry {d.get('task')}` runs it again."
        )
    elif event == "auth_stopped":
        title = f"ralph: agent {d.get('agent')} could not authenticate; the run stopped"
        body = (
            f"{d.get('error')}\n"
            f"Next: {d.get('hint') or 'log the agent in, or fix its API key'}, then `ralph run`."
        )
    elif event == "breaker_tripped":
        title = "ralph: too many failures in a row; the run stopped"
        body = f"{d.get('error')}\nNext: {d.get('hint') or 'look at `ralph list --status failed`'}."
    elif event == "paused":
        until = d.get("until")
        when = time.strftime("%H:%M:%S %Z", time.localtime(until)) if until else "unknown"
        title = f"ralph: every worker paused until {when}"
        body = (
            f"{d.get('reason')}\nThe workers go on by themselves at {when}.\n"
            "Next: nothing, unless the limit needs a bigger plan or the network a look."
        )
    elif event == "budget_reached":
        title = "ralph: the budget cap ended the run"
        body = f"{d.get('reason')}\nNext: raise --max-cost and `ralph run` again to go on."
    elif event == "worker_lost":
        title = f"ralph: worker {d.get('worker')} stopped answering"
        tasks = ", ".join(d.get("tasks") or []) or "none"
        body = (
            f"{d.get('worker')}'s heartbeat died and its claims expired (tasks: {tasks}); "
            "they are ready again for another worker.\n"
            f"Next: check the host of {d.get('worker')} (crash, OOM, reboot)."
        )
    else:
        title, body = f"ralph: {event}", str(d)
    return Message(event, title, body, d, d.get("report"))


def send_one(url: str, message: Message, timeout: float) -> str | None:
    """Send `message` to one apprise URL within `timeout` seconds; None, or why it failed."""
    import apprise  # lazy: start-up (apprise: ~60 ms, only to send)

    client = apprise.Apprise()
    if not client.add(url):
        return f"apprise does not understand {shown(url)}"
    for service in client:  # the HTTP-based services honour these
        for attr in ("socket_connect_timeout", "socket_read_timeout"):
            if hasattr(service, attr):
                setattr(service, attr, timeout)
    errors: list[str] = []

    def note(entry: Any, *_: Any) -> None:
        level = str(getattr(entry, "level", ""))
        text = str(getattr(entry, "message", entry))
        if "ERROR" in level.upper() or "WARN" in level.upper():
            errors.append(text)

    attach = [message.attach] if message.attach and os.path.isfile(message.attach) else None
    try:
        ok = client.notify(
            body=message.body,
            title=message.title,
            attach=attach,
            timeout=timeout,
            log_callback=note,
        )
    except TypeError:  # an apprise without log callbacks or timeouts
        ok = client.notify(body=message.body, title=message.title, attach=attach)
    if ok:
        return None
    return (errors[-1] if errors else "the service did not accept it")[:300]


def check_urls(urls: list[str]) -> None:
    if not urls:
        raise ConfigError(
            "no notification URLs configured",
            hint=f'add [notify] urls = ["ntfy://..."] to ralph.toml, or set {ENV_URLS}',
        )


class Notifier:
    """Queues messages and sends them on one background thread; see the module docstring."""

    def __init__(
        self,
        settings: NotifySettings,
        *,
        record: Callable[..., None] | None = None,
        log: Callable[[str], None] | None = None,
        sender: Callable[[str, Message, float], str | None] = send_one,
    ):
        self.settings = settings
        self.record = record  # writes an event: record(kind, **data)
        self.log = log or (lambda line: None)
        self.sender = sender
        self.sent: list[tuple[str, str]] = []  # (event, shown url) delivered
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._pending: list[Message] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def emit(self, event: str, **data: Any) -> None:
        """Queue `event` if it is configured; never blocks, never raises."""
        try:
            if self._closed or not self.settings.wants(event):
                return
            message = compose(event, data)
            with self._lock:
                self._pending.append(message)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="ralph-notify", daemon=True
                    )
                    self._thread.start()
            self._queue.put(message)
        except Exception as exc:  # a notification must never end a run
            self.log(f"notify: could not queue {event}: {exc}")

    def close(self, wait: float | None = None) -> list[Message]:
        """Wait at most `wait` (the send timeout) for the queue; returns the undelivered ones,
        each written down as a `notify_failed` event."""
        self._closed = True
        with self._lock:
            thread = self._thread
        if thread is None:
            return []
        self._queue.put(None)
        thread.join(self.settings.timeout if wait is None else wait)
        with self._lock:
            left, self._pending = list(self._pending), []
        for message in left:
            self._failed(message, "*", "not delivered before the run ended (the receiver hung)")
        return left

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            for url in self.settings.urls:
                error = self._send(url, message)
                if error is None:
                    self.sent.append((message.event, shown(url)))
                else:
                    self._failed(message, shown(url), error)
            with self._lock:
                if message in self._pending:
                    self._pending.remove(message)

    def _send(self, url: str, message: Message) -> str | None:
        """Send with retries (tenacity); None, or the last error."""
        import tenacity  # lazy: start-up

        def attempt() -> None:
            error = self.sender(url, message, self.settings.timeout)
            if error is not None:
                raise RuntimeError(error)

        try:
            for retry in tenacity.Retrying(
                stop=tenacity.stop_after_attempt(self.settings.retries),
                wait=tenacity.wait_exponential(multiplier=0.5, max=5),
                reraise=True,
            ):
                with retry:
                    attempt()
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return None

    def _failed(self, message: Message, where: str, error: str) -> None:
        self.log(f"notify: {message.event} to {where} failed: {error}")
        if self.record is None:
            return
        try:
            self.record("notify_failed", notify_event=message.event, url=where, error=error)
        except Exception as exc:  # the store may be gone at the very end of a run
            self.log(f"notify: could not record the failure: {exc}")


def send_test(settings: NotifySettings) -> list[dict[str, Any]]:
    """`ralph notify test`: one message to each URL, now, in turn; each result."""
    check_urls(settings.urls)
    message = Message(
        "test",
        "ralph: test notification",
        "If you read this, ralph can reach you when a run needs you.",
        {},
    )
    results = []
    for url in settings.urls:
        started = time.monotonic()
        try:
            error = send_one(url, message, settings.timeout)
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        results.append(
            {
                "url": shown(url),
                "ok": error is None,
                "error": error,
                "seconds": round(time.monotonic() - started, 3),
            }
        )
    return results
