"""ralph: Run Agent Loop Per Host — a task store with leased claims and a fresh agent per task."""

from ralph.errors import (
    AlreadyClaimedError,
    BlockedError,
    CycleError,
    InvalidTransitionError,
    LeaseLostError,
    NotHolderError,
    RalphError,
    TaskNotFoundError,
)
from ralph.models import Attempt, Claim, Event, Task, Worker
from ralph.store import Store, open_store
from ralph.version import __version__ as __version__

__all__ = [
    "AlreadyClaimedError",
    "Attempt",
    "BlockedError",
    "Claim",
    "CycleError",
    "Event",
    "InvalidTransitionError",
    "LeaseLostError",
    "NotHolderError",
    "RalphError",
    "Store",
    "Task",
    "TaskNotFoundError",
    "Worker",
    "open_store",
]
