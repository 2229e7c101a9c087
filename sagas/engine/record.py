"""The single write path of the engine: every transition is one short transaction.

    fenced UPDATE of the saga row  (WHERE id = … AND lease_token = …, row count checked)
    + the attempt row it closes and/or opens
    then, after the commit, one `SAGA …` JSON log line per event and the event listeners
    (the hook for metrics).

Zero rows means another worker took the lease over: LeaseLost, and the caller stops
quietly without having recorded anything.
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models.functions import Now

from sagas.engine import pgsql
from sagas.engine.outcomes import CallResult
from sagas.engine.transitions import Call, SagaState
from sagas.models import TERMINAL_STATUSES, SagaAttempt, SagaInstance, SagaStatus

logger = logging.getLogger("sagas.engine")

# Called with each event dict after its transition committed (e.g. Prometheus counters).
# A listener must be fast and must not raise.
EVENT_LISTENERS: list[Callable[[dict], None]] = []


class LeaseLost(Exception):
    """The saga's lease token changed: another worker owns it now."""


class CancelRequested(Exception):
    """A cancel arrived since the claim: nothing was written; decide again with it."""


@dataclass
class Lease:
    saga_id: uuid.UUID
    token: uuid.UUID
    owner: str
    definition: str
    created_at: datetime
    lost: bool = False  # set by the lease keeper when a renewal found another token
    # The X-Request-ID of the saga's start: on every call and every SAGA log line.
    request_id: str = ""


@dataclass(frozen=True)
class AttemptOpen:
    call: Call
    step: str
    method: str
    url: str
    started_at: datetime


@dataclass(frozen=True)
class AttemptClose:
    call: Call
    step: str
    result: CallResult


def transition_record(
    *,
    lease: Lease,
    before: str,
    state: SagaState,
    now: datetime,
    lease_seconds: float,
    closed: AttemptClose | None = None,
    opened: AttemptOpen | None = None,
    release: bool = False,
) -> None:
    """Persist `state` (and the attempt rows) if we still hold the lease; else LeaseLost.

    Held, the saga's `next_attempt_at` is the lease expiry: when another worker may take
    it over. Released, it is the state's own (a retry time, or None when finished).
    """
    fields = _state_fields(state, now)
    if release:
        fields.update(lease_token=None, lease_owner="", lease_expires_at=None)
    else:
        expires = now + timedelta(seconds=lease_seconds)
        fields.update(lease_expires_at=expires, next_attempt_at=expires)
    # The worker re-reads cancel_requested at each transition at no cost: until it knows
    # of a cancel, the fence also requires it unset — the final write included, so that a
    # saga never ends `completed` (or `compensated`) after a cancel was accepted (§9.1) —
    # and a miss tells which condition failed.
    watch_cancel = not state.cancel_requested
    if connection.vendor == "postgresql":
        held_for = None if release else lease_seconds
        written = _write_one_statement(lease, fields, held_for, watch_cancel, closed, opened)
    else:
        written = _write_transaction(lease, fields, watch_cancel, closed, opened)
    if written != 1:
        fenced = SagaInstance.objects.filter(id=lease.saga_id, lease_token=lease.token)
        if watch_cancel and fenced.exists():
            raise CancelRequested(str(lease.saga_id))
        raise LeaseLost(str(lease.saga_id))
    for event in _events(lease, before, state, closed):
        event_emit(event)


def _write_transaction(lease, fields, watch_cancel, closed, opened) -> int:
    """The write as one short ORM transaction (SQLite; and the reference for pgsql.py)."""
    with transaction.atomic():
        fenced = SagaInstance.objects.filter(id=lease.saga_id, lease_token=lease.token)
        if watch_cancel:
            fenced = fenced.filter(cancel_requested=False)
        if fenced.update(**fields) != 1:
            return 0
        if closed is not None:
            _attempt_close(lease, closed)
        if opened is not None:
            _attempt_open(lease, opened)
    return 1


def _write_one_statement(lease, fields, held_for, watch_cancel, closed, opened) -> int:
    fields = {"lease_token": lease.token, "lease_owner": lease.owner} | fields
    # The statement computes the expiry by the database's clock from `lease_seconds`.
    fields.pop("lease_expires_at")
    fields["lease_seconds"] = held_for
    return pgsql.transition_write(
        saga_id=lease.saga_id,
        token=lease.token,
        fields=fields,
        watch_cancel=watch_cancel,
        closed=_close_values(closed) if closed else None,
        opened=_open_values(opened) if opened else None,
    )


def lease_renew(*, lease: Lease, now: datetime, lease_seconds: float) -> bool:
    """Push the lease expiry out while a call is in flight; False if it was lost.

    `now` is the worker's clock, used on SQLite only (claim.py says why)."""
    expires = _db_clock_plus(now, lease_seconds)
    fenced = SagaInstance.objects.filter(id=lease.saga_id, lease_token=lease.token)
    return fenced.update(lease_expires_at=expires, next_attempt_at=expires) == 1


def lease_release(*, lease: Lease, now: datetime, delay_seconds: float) -> bool:
    """Give the saga back unchanged, due again in `delay_seconds` (shutdown, lock conflict,
    error); `now` as for lease_renew."""
    fenced = SagaInstance.objects.filter(id=lease.saga_id, lease_token=lease.token)
    released = {"lease_token": None, "lease_owner": "", "lease_expires_at": None}
    due_at = _db_clock_plus(now, delay_seconds)
    return fenced.update(**released, next_attempt_at=due_at) == 1


def _db_clock_plus(now: datetime, seconds: float):
    """`seconds` from now by the database's clock on PostgreSQL (STATEMENT_TIMESTAMP()),
    as the claim's due check reads it; by `now` on SQLite."""
    if connection.vendor == "postgresql":
        return Now() + timedelta(seconds=seconds)
    return now + timedelta(seconds=seconds)


def _state_fields(state: SagaState, now: datetime) -> dict:
    return {
        "status": state.status,
        "phase": state.phase,
        "current_step": state.current_step,
        "steps": state.steps,
        "error": state.error,
        "cause": state.cause,
        "next_attempt_at": state.next_attempt_at,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "updated_at": now,
    }


def _close_values(closed: AttemptClose) -> dict:
    result = closed.result
    return {
        "step_index": closed.call.index,
        "phase": str(closed.call.phase),
        "attempt": closed.call.attempt,
        "status_code": result.status_code,
        "outcome": str(result.outcome),
        "error": result.error,
        "duration_ms": round(result.duration_ms, 3),
    }


def _open_values(opened: AttemptOpen) -> dict:
    return {
        "step": opened.step,
        "step_index": opened.call.index,
        "phase": str(opened.call.phase),
        "attempt": opened.call.attempt,
        "method": opened.method,
        "url": opened.url,
        "started_at": opened.started_at,
    }


def _attempt_close(lease: Lease, closed: AttemptClose) -> None:
    values = _close_values(closed)
    SagaAttempt.objects.filter(
        saga_id=lease.saga_id,
        step_index=values.pop("step_index"),
        phase=values.pop("phase"),
        attempt=values.pop("attempt"),
        outcome__isnull=True,
    ).update(**values)


def _attempt_open(lease: Lease, opened: AttemptOpen) -> None:
    SagaAttempt.objects.create(saga_id=lease.saga_id, **_open_values(opened))


def _events(lease: Lease, before: str, state: SagaState, closed: AttemptClose | None):
    base = {
        "saga_id": str(lease.saga_id),
        "definition": lease.definition,
        "request_id": lease.request_id,
    }
    if closed is not None:
        result = closed.result
        yield base | {
            "event": "call",
            "step": closed.step,
            "phase": str(closed.call.phase),
            "attempt": closed.call.attempt,
            "outcome": str(result.outcome),
            "status_code": result.status_code,
            "duration_ms": round(result.duration_ms, 3),
            "error": result.error,
        }
    if state.status == before:
        return
    event = {
        "event": str(state.status),
        "status": str(state.status),
        "step": None,
        "phase": str(state.phase),
        "attempt": None,
        "outcome": str(state.status),
        "duration_ms": None,
        "error": (state.error or {}).get("code"),
    }
    if state.status in TERMINAL_STATUSES and state.finished_at is not None:
        took = state.finished_at - lease.created_at
        event["duration_ms"] = round(took.total_seconds() * 1000, 3)
        event["event"] = "finished"
    elif state.status == SagaStatus.RUNNING:
        event["event"] = "started"
    yield base | event


def event_emit(event: dict) -> None:
    """One `SAGA …` log line, then the listeners."""
    parts = [event["event"], event["definition"], event["saga_id"]]
    if event.get("step"):
        parts += [event["step"], event["phase"], f"#{event['attempt']}"]
    parts.append(str(event["outcome"]))
    if event.get("duration_ms") is not None:
        parts.append(f"{event['duration_ms']:.1f}ms")
    logger.info("SAGA " + " ".join(parts), extra=event)
    for listener in EVENT_LISTENERS:
        try:
            listener(event)
        except Exception:
            logger.exception("saga event listener failed")
