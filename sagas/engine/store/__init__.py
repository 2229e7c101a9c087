"""The store: every write and claim of sagas, steps, attempts and leases, on PostgreSQL and
SQLite alike (one implementation; dialect.py is the seam). The ORM models stay the schema
and the read side; nothing outside this package writes those rows.

    saga_insert(params=…)                   start a saga (start.py)
    saga_claim(owner, now, lease_seconds)   lease the most overdue saga (claim.py)
    transition_record(lease, state, …)      a fenced transition + its attempt rows
    lease_renew / lease_release             fenced lease upkeep (transition.py)
    saga_locked / saga_update               cancel, retry, pause, resume (control.py)
    history_insert(saga_id, events)         history rows in the caller's transaction
    next_due_at()                           when idle workers should look again (a read)
    GroupWriter                             group commit of a worker's transitions
"""

from sagas.engine.store.claim import next_due_at, saga_claim
from sagas.engine.store.control import saga_locked, saga_update
from sagas.engine.store.events import EVENT_LISTENERS, event_emit
from sagas.engine.store.history import history_insert
from sagas.engine.store.records import (
    AttemptClose,
    AttemptOpen,
    Claimed,
    ControlRequested,
    Lease,
    LeaseLost,
)
from sagas.engine.store.start import saga_insert
from sagas.engine.store.transition import lease_release, lease_renew, transition_record
from sagas.engine.store.writer import GroupWriter

__all__ = [
    "EVENT_LISTENERS",
    "AttemptClose",
    "GroupWriter",
    "AttemptOpen",
    "ControlRequested",
    "Claimed",
    "Lease",
    "LeaseLost",
    "event_emit",
    "history_insert",
    "lease_release",
    "lease_renew",
    "next_due_at",
    "saga_claim",
    "saga_insert",
    "saga_locked",
    "saga_update",
    "transition_record",
]
