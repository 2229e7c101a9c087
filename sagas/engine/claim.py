"""Claiming due work: one saga at a time, leased to one worker.

Due: active, `next_attempt_at <= now`, and no live lease. On PostgreSQL the row is picked
with `SELECT … FOR UPDATE SKIP LOCKED` inside the leasing UPDATE (workers never queue on
each other; pgsql.py); on SQLite a compare-and-set on the old lease token does the same.
Either way the new lease token is what fences every later write.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Min, Q

from sagas.engine import pgsql
from sagas.engine.record import Lease
from sagas.engine.transitions import SagaState
from sagas.models import ACTIVE_STATUSES, SagaInstance


@dataclass
class Claimed:
    lease: Lease
    state: SagaState
    saga_input: dict
    definition_id: int


def _due(now: datetime):
    return (
        SagaInstance.objects.filter(status__in=ACTIVE_STATUSES, next_attempt_at__lte=now)
        .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
        .order_by("next_attempt_at")
    )


def saga_claim(*, owner: str, now: datetime, lease_seconds: float) -> Claimed | None:
    """Lease the most overdue saga to `owner`, or None when nothing is due."""
    token = uuid.uuid4()
    expires = now + timedelta(seconds=lease_seconds)
    lease_fields = {
        "lease_owner": owner,
        "lease_token": token,
        "lease_expires_at": expires,
        # Held, a saga is due again only when its lease runs out (a crashed worker).
        "next_attempt_at": expires,
    }
    if connection.vendor == "postgresql":
        # One statement: UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) RETURNING.
        row = pgsql.claim_row(owner=owner, token=token, now=now, expires=expires)
        return None if row is None else _claimed(SagaInstance(**row), owner, token)
    saga = _due(now).first()
    if saga is None:
        return None
    # Compare-and-set: only if nobody claimed it since we read it.
    won = SagaInstance.objects.filter(
        id=saga.id, lease_token=saga.lease_token, lease_expires_at=saga.lease_expires_at
    ).update(**lease_fields)
    if not won:
        return None
    return _claimed(saga, owner, token)


def _claimed(saga: SagaInstance, owner: str, token: uuid.UUID) -> Claimed:
    lease = Lease(
        saga_id=saga.id,
        token=token,
        owner=owner,
        definition=saga.definition_name,
        created_at=saga.created_at,
        # Sagas started before the id was kept: their own id, the same on every call.
        request_id=saga.request_id or saga.id.hex,
    )
    state = SagaState(
        status=saga.status,
        phase=saga.phase,
        current_step=saga.current_step,
        steps=saga.steps,
        error=saga.error,
        cause=saga.cause,
        cancel_requested=saga.cancel_requested,
        deadline_at=saga.deadline_at,
        # Its due time has come (or its holder's lease ran out): due now.
        next_attempt_at=None,
        started_at=saga.started_at,
        finished_at=saga.finished_at,
    )
    return Claimed(lease, state, saga.input, saga.definition_id)


def next_due_at() -> datetime | None:
    """When the earliest waiting saga becomes due (idle workers sleep until then)."""
    return SagaInstance.objects.filter(status__in=ACTIVE_STATUSES).aggregate(
        due=Min("next_attempt_at")
    )["due"]
