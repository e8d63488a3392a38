"""The records ralph stores: tasks, claims, workers, events and agent attempts.

Timestamps are UTC epoch seconds (float) everywhere inside ralph and in the database; they become
ISO-8601 with a Z only when printed, so no comparison ever mixes two formats.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

STATUSES = ("open", "done", "failed", "cancelled", "review")
# A task id is a component of git ref names (`refs/ralph/tasks/<id>`), so it follows git's
# ref-name rules (git check-ref-format) without starting git: no ':', no '..', not ending in
# '.' or '.lock'. git refused such ids only at landing time, and the task was retried forever.
ID_PATTERN = re.compile(r"^(?!.*\.\.)(?!.*\.lock\Z)(?!.*\.\Z)[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
ID_RULES = (
    "ids are 1-64 letters, digits, '.', '_' or '-', start with a letter or digit, and must be "
    "a valid git ref name: no '..', not ending in '.' or '.lock'"
)


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC with millisecond precision and a Z."""
    if ts is None or ts == 0:
        return None
    return (
        datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(ts * 1000) % 1000:03d}Z"
    )


def from_iso(text: str | float | int | None) -> float | None:
    """Parse what `iso` prints (or an epoch number) back to epoch seconds."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        return float(text)
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def _load(value: Any, default: Any) -> Any:
    """Decode a JSON column; PostgreSQL hands back objects already, SQLite hands back text."""
    if value is None:
        return default
    if isinstance(value, str | bytes):
        # Most rows hold empty labels/requires/metadata; skipping the decoder halves list().
        if value == "[]":
            return []
        if value == "{}":
            return {}
        return json.loads(value)
    return value


@dataclass
class Task:
    """A unit of work an agent can do."""

    id: str
    title: str
    description: str = ""
    status: str = "open"
    priority: int = 0
    parent: str | None = None
    labels: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # counted agent runs, the successful one included (not rate limits)
    open_blockers: int = 0
    open_children: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    done_at: float | None = None
    not_before: float = 0.0
    last_error: str | None = None
    lease_expires: float = 0.0
    commit_sha: str | None = None
    discovered_from: str | None = None
    review_notes: str | None = None  # a reviewer's notes for the next attempt (schema 3)
    blocked_by: list[str] = field(default_factory=list)
    claimed_by: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Task:
        return cls(
            id=row["id"],
            title=row["title"],
            description=row["description"] or "",
            status=row["status"],
            priority=row["priority"],
            parent=row["parent"],
            labels=_load(row["labels"], []),
            requires=_load(row["requires"], []),
            metadata=_load(row["metadata"], {}),
            attempts=row["attempts"],
            open_blockers=row["open_blockers"],
            open_children=row["open_children"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            done_at=row["done_at"],
            not_before=row["not_before"],
            last_error=row["last_error"],
            lease_expires=row["lease_expires"],
            commit_sha=row["commit_sha"],
            discovered_from=row["discovered_from"],
            review_notes=row["review_notes"],
        )

    def is_ready(self, now: float | None = None) -> bool:
        """Whether a worker without special capabilities could claim it now."""
        now = time.time() if now is None else now
        return (
            self.status == "open"
            and self.open_blockers == 0
            and self.open_children == 0
            and self.lease_expires <= now
            and self.not_before <= now
        )

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """The JSON shape `list --json` prints and `add --from` reads."""
        now = time.time() if now is None else now
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "status": self.status,
            "priority": self.priority,
            "parent": self.parent,
            "labels": self.labels,
            "requires": self.requires,
            "metadata": self.metadata,
            "blocked_by": self.blocked_by,
            "attempts": self.attempts,
            "ready": self.is_ready(now),
            "claimed_by": self.claimed_by if self.lease_expires > now else None,
            "lease_expires_at": iso(self.lease_expires) if self.lease_expires > now else None,
            "retry_at": iso(self.not_before) if self.not_before > now else None,
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "done_at": iso(self.done_at),
            "commit": self.commit_sha,
            "discovered_from": self.discovered_from,
        }


@dataclass
class Claim:
    """A worker's leased hold on a task; `token` is the fencing token (monotonic per task)."""

    token: int
    task_id: str
    worker: str
    lease_seconds: float
    claimed_at: float
    expires_at: float
    renewals: int = 0
    state: str = "live"
    ended_at: float | None = None

    @property
    def id(self) -> int:
        return self.token

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Claim:
        return cls(
            token=row["id"],
            task_id=row["task_id"],
            worker=row["worker"],
            lease_seconds=row["lease_seconds"],
            claimed_at=row["claimed_at"],
            expires_at=row["expires_at"],
            renewals=row["renewals"],
            state=row["state"],
            ended_at=row["ended_at"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.token,
            "token": self.token,
            "task_id": self.task_id,
            "worker": self.worker,
            "lease_seconds": self.lease_seconds,
            "claimed_at": iso(self.claimed_at),
            "expires_at": iso(self.expires_at),
            "renewals": self.renewals,
            "state": self.state,
        }


@dataclass
class Worker:
    """A registered worker process; `state` is derived from its heartbeat."""

    id: str
    name: str
    pid: int | None
    host: str | None
    capabilities: list[str]
    status: str
    current_task: str | None
    started_at: float
    heartbeat_at: float
    heartbeat_interval: float
    stop_requested: bool = False
    sandbox: str | None = None  # what confines its attempts, "unsandboxed" when nothing (schema 3)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Worker:
        return cls(
            id=row["id"],
            name=row["name"],
            pid=row["pid"],
            host=row["host"],
            capabilities=_load(row["capabilities"], []),
            status=row["status"],
            current_task=row["current_task"],
            started_at=row["started_at"],
            heartbeat_at=row["heartbeat_at"],
            heartbeat_interval=row["heartbeat_interval"],
            stop_requested=bool(row["stop_requested"]),
            sandbox=row["sandbox"],
        )

    def state(self, now: float | None = None) -> str:
        """idle, busy, stopped, or dead (no heartbeat for three intervals)."""
        now = time.time() if now is None else now
        if self.status == "stopped":
            return "stopped"
        if now - self.heartbeat_at > 3 * self.heartbeat_interval:
            return "dead"
        return self.status

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state(now)
        for key in ("started_at", "heartbeat_at"):
            data[key] = iso(data[key])
        return data


@dataclass
class Event:
    """One line of the append-only audit log."""

    id: int
    at: float
    kind: str
    task_id: str | None
    worker: str | None
    token: int | None
    data: dict[str, Any]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Event:
        return cls(
            id=row["id"],
            at=row["at"],
            kind=row["kind"],
            task_id=row["task_id"],
            worker=row["worker"],
            token=row["token"],
            data=_load(row["data"], {}),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = iso(self.at)
        return data


@dataclass
class Attempt:
    """One launch of an agent on a task, with what it cost and how it ended."""

    id: int
    task_id: str
    attempt: int
    worker: str
    agent: str
    started_at: float
    ended_at: float | None = None
    outcome: str | None = None
    exit_code: int | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    session_id: str | None = None
    run_dir: str | None = None
    summary: str | None = None
    counted: bool = True
    token: int | None = None
    host: str | None = None
    cost_estimated: bool = False
    kind: str = "task"  # "task", or "resolve" for a conflict resolution (schema 3)
    model: str | None = None  # the model the agent reported or was given (schema 3)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Attempt:
        flags = ("counted", "cost_estimated")
        return cls(
            **{k: row[k] for k in cls.__dataclass_fields__ if k not in flags},
            counted=bool(row["counted"]),
            cost_estimated=bool(row["cost_estimated"]),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = iso(self.started_at)
        data["ended_at"] = iso(self.ended_at)
        data["duration_s"] = round(self.ended_at - self.started_at, 3) if self.ended_at else None
        return data


@dataclass
class AttemptEnd:
    """How an attempt ended, as one store call records it."""

    outcome: str
    exit_code: int | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    session_id: str | None = None
    summary: str | None = None
    counted: bool = True
    cost_estimated: bool = False
    model: str | None = None  # what the agent said it used; None keeps the configured model

    def params(self) -> dict[str, Any]:
        data = asdict(self)
        data["counted"] = int(self.counted)
        data["cost_estimated"] = int(self.cost_estimated)
        return data
