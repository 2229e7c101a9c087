"""Claiming due work: one saga at a time, leased to one worker.

Due: active, `next_attempt_at <= now`, and no live lease. On PostgreSQL the row is picked
with `SELECT … FOR UPDATE SKIP LOCKED` inside the leasing UPDATE (workers never queue on
each other; pgsql.py); on SQLite a conditional UPDATE that re-checks "due" does the same.
Either way the new lease token is what fences every later write.

Whose clock: on PostgreSQL the database's, for "now" and for the lease expiry (pgsql.py),
so a worker host whose clock runs ahead cannot take over a live lease. On SQLite, the
embedded default, the process's clock: the database is a file of the one host that runs
the API and the worker, so there is no other clock to disagree with.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import DurationField, ExpressionWrapper, Min, Q
from django.db.models.functions import Now
from django.utils import timezone

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
    """Lease the most overdue saga to `owner`, or None when nothing is due.

    `now` is the worker's clock, used on SQLite only: on PostgreSQL the statement reads
    the database's clock (see the module docstring)."""
    token = uuid.uuid4()
    if connection.vendor == "postgresql":
        # One statement: UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) RETURNING.
        row = pgsql.claim_row(owner=owner, token=token, lease_seconds=lease_seconds)
        return None if row is None else _claimed(SagaInstance(**row), owner, token)
    return _claim_orm(owner, token, now, lease_seconds)


def _claim_orm(owner: str, token: uuid.UUID, now: datetime, lease_seconds: float) -> Claimed | None:
    candidate = _due(now).values_list("id", flat=True).first()
    if candidate is None:
        return None
    expires = now + timedelta(seconds=lease_seconds)
    # Held, a saga is due again only when its lease runs out (a crashed worker).
    leased = {"lease_owner": owner, "lease_token": token, "lease_expires_at": expires}
    leased["next_attempt_at"] = expires
    # Taken only if it is still due as the UPDATE runs. A compare-and-set on the token
    # read above is not enough: another thread may claim it, make a call and release it
    # (the same empty token again) in between, and the saga would run again from the
    # state read before that call (a call made twice under one attempt number).
    won = _due(now).filter(id=candidate).update(**leased)
    if not won:
        return None
    # Read after winning: the state is the one this lease now fences.
    return _claimed(SagaInstance.objects.get(id=candidate), owner, token)


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
    """When the earliest waiting saga becomes due, by this process's clock (idle workers
    sleep until then). On PostgreSQL the wait is measured by the database's clock, which
    the claim's due check reads: a worker whose clock is off neither spins nor oversleeps."""
    waiting = SagaInstance.objects.filter(status__in=ACTIVE_STATUSES)
    if connection.vendor != "postgresql":
        return waiting.aggregate(due=Min("next_attempt_at"))["due"]
    wait = waiting.aggregate(
        wait=ExpressionWrapper(Min("next_attempt_at") - Now(), output_field=DurationField())
    )["wait"]
    return None if wait is None else timezone.now() + wait
