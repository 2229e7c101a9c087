"""A participant's callback for an asynchronous step (DESIGN §9.4): checked and recorded in
one short transaction on the locked saga row. The rules are callbacks.py's (pure); the
worker applies the record (transitions.decide).

The record goes to the row's `callback` column, which no worker writes except to clear it
once applied: a saga waiting for its callback is held by nobody and becomes due now; one
whose call is still in flight is held by its worker, whose next fenced write finds the
column changed and decides again with it (engine/store/transition.py).
"""

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sagas.engine.callbacks import (
    CONFLICT,
    RECORD,
    Verdict,
    callback_parse,
    callback_record,
    callback_text,
    callback_verdict,
    token_matches,
)
from sagas.engine.store import event_emit, saga_locked, saga_update
from sagas.engine.wakeup import wake_workers
from sagas.errors import Conflict, Forbidden, NotFound
from sagas.models import SagaInstance, SagaStatus

# Metric and log outcome of a callback refused for its token (403).
FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class Received:
    """What the endpoint answers: `recorded` (202) or a duplicate (200)."""

    recorded: bool
    saga: SagaInstance


def step_callback(
    *, saga_id, step: str, token: str | None, outcome: str, response: Any, error: str | None
) -> Received:
    """Record the callback of `step`'s current run. NotFound (404) for an unknown saga or
    step, Forbidden (403) for a token that is not this run's, Conflict (409) when another
    outcome was recorded or the step neither waits nor has its call in flight."""
    with transaction.atomic():
        saga = _saga(saga_id)
        state = next((entry for entry in saga.steps if entry["name"] == step), None)
        if state is None:
            raise NotFound("No step with this name in this saga.")
        # The run whose key (and token) the step's calls carry (calls.py).
        key_run = state.get("key_run") or state.get("run", 1)
        now = timezone.now()
        if not token_matches(settings.SECRET_KEY, str(saga.id), step, key_run, token):
            verdict = Verdict(FORBIDDEN, "The callback token is not valid for this step.")
        else:
            verdict = callback_verdict(
                saga_status=saga.status,
                cancel_requested=saga.cancel_requested,
                step=state,
                pending=callback_parse(saga.callback),
                outcome=outcome,
                response=response,
                now=now,
            )
        if verdict.kind == RECORD:
            record = callback_record(
                step=step,
                run=state.get("run", 1),
                outcome=outcome,
                response=response,
                error=error,
                now=now,
            )
            _record(saga, record, now)
    # Refusals write nothing; each answer is one `SAGA callback` line and one count.
    _emit(saga, state, outcome if verdict.kind == RECORD else verdict.kind)
    if verdict.kind == FORBIDDEN:
        raise Forbidden(verdict.reason)
    if verdict.kind == CONFLICT:
        raise Conflict(verdict.reason, saga_status=saga.status)
    return Received(recorded=verdict.kind == RECORD, saga=saga)


def _saga(saga_id) -> SagaInstance:
    try:
        return saga_locked(saga_id)
    except SagaInstance.DoesNotExist:
        raise NotFound("No saga with this id.") from None


def _record(saga: SagaInstance, record: dict, now) -> None:
    saga.callback = callback_text(record)
    fields = ["callback"]
    unheld = saga.lease_token is None or saga.lease_expires_at <= now
    if saga.status == SagaStatus.RUNNING and unheld:
        # Waiting, held by nobody: due now (a paused saga applies it at resume).
        saga.next_attempt_at = now
        fields.append("next_attempt_at")
        transaction.on_commit(wake_workers)
    saga_update(saga, fields)


def _emit(saga: SagaInstance, step: dict, outcome: str) -> None:
    """One `SAGA callback` line (never the token), counted by outcome in the metrics."""
    event_emit(
        {
            "event": "callback",
            "saga_id": str(saga.id),
            "definition": saga.definition_name,
            "status": str(saga.status),
            "step": step["name"],
            "phase": "action",
            "attempt": step.get("attempts"),
            "outcome": outcome,
            "duration_ms": None,
            "error": None,
        }
    )
