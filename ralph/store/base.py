"""The store's domain logic, written once over named queries; backends supply transactions.

`SQLStore` is a façade put together from one mixin per concern (see docs/architecture.md):
`adding` (new tasks), `tasks`, `deps`, `claims` (leases, fencing, finish, reconcile, expiry),
`workers`, `attempts`, `events` (the audit log and the pause) and `reads` (the dashboard's
queries), all over `core.StoreCore`. A backend subclasses `SQLStore` and implements
`transaction()`, yielding a `Tx` that runs the named queries of its own `.sql` file with one
clock value (`tx.now`) for the whole transaction. A new concern is one more mixin class
(methods using `self.transaction()`, `tx.one/all/run/many`, `self._event`, `self._task`)
added to the bases below.
"""

from __future__ import annotations

from ralph.store.adding import AddStore
from ralph.store.attempts import AttemptStore
from ralph.store.claimcheck import ClaimCheck
from ralph.store.claims import ClaimStore
from ralph.store.core import (
    DEAD_AFTER_BEATS,
    PAGE_STATES,
    Row,
    StoreCore,
    Tx,
    new_task_id,
)
from ralph.store.deps import DependencyStore
from ralph.store.events import EventStore
from ralph.store.reads import ReadStore
from ralph.store.reviews import ReviewStore
from ralph.store.runpause import RunPauses
from ralph.store.tasks import TaskStore
from ralph.store.workers import WorkerStore

__all__ = ["DEAD_AFTER_BEATS", "PAGE_STATES", "Row", "SQLStore", "StoreCore", "Tx", "new_task_id"]


class SQLStore(
    ReviewStore,
    RunPauses,
    AddStore,
    TaskStore,
    DependencyStore,
    ClaimStore,
    ClaimCheck,
    WorkerStore,
    AttemptStore,
    EventStore,
    ReadStore,
    StoreCore,
):
    """Tasks, dependencies, leased claims, workers, events and attempts over a SQL database."""

    backend = "sql"
