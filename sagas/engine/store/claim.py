"""Claiming due work: one saga at a time, leased to one worker.

Due: active, `next_attempt_at <= now`, and no live lease. The row is leased by one
UPDATE … WHERE id = (pick) AND (still due) RETURNING: on PostgreSQL the pick is a subquery
that locks with SKIP LOCKED (workers never queue on each other; one statement); on SQLite
a candidate read just before. The new lease token fences every later write. "Now" is the
dialect's clock (dialect.py).
"""

# ruff: noqa: S608

import uuid
from datetime import datetime

from django.db import connection
from django.db.models import DurationField, ExpressionWrapper, F, Min, Q
from django.db.models.functions import Coalesce, Greatest, Now
from django.utils import timezone

from sagas.engine.callbacks import callback_parse
from sagas.engine.store import dialect
from sagas.engine.store.records import Claimed, Lease
from sagas.engine.trace_context import trace_stored
from sagas.engine.transitions import PERSISTED, state_of
from sagas.models import ACTIVE_STATUSES, SagaInstance

SAGA = SagaInstance._meta.db_table
ACTIVE = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
# The saga's state, and what its run needs besides.
CLAIMED_COLUMNS = (
    "id",
    *(name for name in PERSISTED if name != "next_attempt_at"),
    "callback",
    "input",
    "definition_id",
    "definition_name",
    "created_at",
    "request_id",
    "traceparent",
    "tracestate",
)


def _due_sql() -> str:
    now = dialect.now_sql()
    return (
        f"status IN ({ACTIVE}) AND next_attempt_at <= {now}"
        f" AND (lease_expires_at IS NULL OR lease_expires_at <= {now})"
    )


def _pick_sql() -> str:
    """The most overdue saga's id: on PostgreSQL a subquery that skips rows other workers
    are claiming; on SQLite a candidate read just before (`candidate`)."""
    if not dialect.is_postgresql():
        return "%(candidate)s"
    return (
        f"SELECT id FROM {SAGA} WHERE {_due_sql()} ORDER BY next_attempt_at LIMIT 1"
        f" {dialect.skip_locked()}"
    )


def _claim_sql() -> str:
    expiry = dialect.later_sql("lease_seconds")
    # Held, a saga is due again only when its lease runs out (a crashed worker): the due
    # check reads lease_expires_at, and next_attempt_at is left alone while it is held, so
    # that the claim, the transitions and the renewals change no indexed column and
    # PostgreSQL can update the row in place (HOT). Taken
    # only if it is still due as the UPDATE runs: a compare-and-set on a token read
    # before is not enough, as another thread may claim it, make a call and release it
    # (the same empty token again) in between, and the saga would run again from the
    # state read before that call (a call made twice under one attempt number).
    return (
        f"UPDATE {SAGA} SET lease_owner = %(owner)s, lease_token = %(token)s,"
        f" lease_expires_at = {expiry}"
        f" WHERE id = ({_pick_sql()}) AND {_due_sql()}"
        f" RETURNING {', '.join(CLAIMED_COLUMNS)}"
    )


def saga_claim(*, owner: str, now: datetime, lease_seconds: float) -> Claimed | None:
    """Lease the most overdue saga to `owner`, or None when nothing is due.

    `now` is the worker's clock, used on SQLite only: on PostgreSQL the statements read
    the database's clock."""
    token = uuid.uuid4()
    params = {
        "owner": owner,
        "token": dialect.adapt(SagaInstance, "lease_token", token),
        **dialect.clock_params(now, lease_seconds=lease_seconds),
    }
    if not dialect.is_postgresql():
        # SQLite: the candidate first, so the UPDATE holds the write lock for as short as
        # possible (its RETURNING row is read while it holds it).
        due = f"SELECT id FROM {SAGA} WHERE {_due_sql()} ORDER BY next_attempt_at LIMIT 1"
        candidates = dialect.execute(due, params)
        if not candidates:
            return None
        params["candidate"] = candidates[0][0]
    rows = dialect.execute(_claim_sql(), params)
    if not rows:
        return None
    return _claimed(dialect.row_values(SagaInstance, CLAIMED_COLUMNS, rows[0]), owner, token)


def _claimed(row: dict, owner: str, token: uuid.UUID) -> Claimed:
    lease = Lease(
        saga_id=row["id"],
        token=token,
        owner=owner,
        definition=row["definition_name"],
        created_at=row["created_at"],
        # Sagas started before the id was kept: their own id, the same on every call.
        request_id=row["request_id"] or row["id"].hex,
        trace=trace_stored(row["traceparent"], row["tracestate"], row["id"].hex),
    )
    # Its due time has come (or its holder's lease ran out): due now.
    state = state_of(row | {"next_attempt_at": None})
    # The callback column (callbacks.py): not part of PERSISTED, which the API's own
    # state changes write back; the worker reads it, and its fence checks it.
    state.callback, state.callback_seen = callback_parse(row["callback"]), row["callback"]
    return Claimed(lease, state, row["input"], row["definition_id"])


def next_due_at() -> datetime | None:
    """When the earliest waiting saga becomes due, by this process's clock (idle workers
    sleep until then; a read): its due time, or its lease's expiry when later (a held
    saga keeps the due time it was claimed at). On PostgreSQL the wait is measured by the
    database's clock, which the claim's due check reads: a worker whose clock is off
    neither spins nor oversleeps."""
    waiting = SagaInstance.objects.filter(status__in=ACTIVE_STATUSES)
    # In due-time order, the first saga whose lease does not push it later bounds the
    # answer: only the (held) ones before it can be earlier. Two short index range
    # scans instead of reading every waiting saga.
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=F("next_attempt_at"))
    bound = waiting.filter(free).order_by("next_attempt_at").values_list("next_attempt_at")[:1]
    bound = bound.first()
    if bound is not None:
        waiting = waiting.filter(next_attempt_at__lte=bound[0])
    due = Greatest("next_attempt_at", Coalesce("lease_expires_at", "next_attempt_at"))
    if connection.vendor != "postgresql":
        return waiting.aggregate(due=Min(due))["due"]
    wait = waiting.aggregate(
        wait=ExpressionWrapper(Min(due) - Now(), output_field=DurationField())
    )["wait"]
    return None if wait is None else timezone.now() + wait
