"""Kept for existing imports: the write path lives in the store (sagas/engine/store/)."""

from sagas.engine.store import (
    EVENT_LISTENERS,
    AttemptClose,
    AttemptOpen,
    CancelRequested,
    Lease,
    LeaseLost,
    event_emit,
    lease_release,
    lease_renew,
    transition_record,
)

__all__ = [
    "EVENT_LISTENERS",
    "AttemptClose",
    "AttemptOpen",
    "CancelRequested",
    "Lease",
    "LeaseLost",
    "event_emit",
    "lease_release",
    "lease_renew",
    "transition_record",
]
