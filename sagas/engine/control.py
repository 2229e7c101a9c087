"""Operator and client requests that change a saga from outside the worker: cancel, retry,
pause, resume (DESIGN §9.1, §9.2).

The API writes only what a worker never writes (`cancel_requested`, `pause_request`), or
rows no worker holds (a pending saga not yet claimed, a saga waiting for a retry, a failed
or paused one). Each change is one short transaction on the locked row, with the history
rows it causes; the worker picks the saga up at its next transition.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sagas.engine.repair import Resume, pause_refusal, resume_apply, resume_refusal
from sagas.engine.store import event_emit, history_insert, saga_locked, saga_update
from sagas.engine.store.outbox import WRITTEN, outbox_insert, outbox_rows
from sagas.engine.transitions import (
    PERSISTED,
    SagaState,
    cancel_apply,
    cancel_refusal,
    group_span,
    history_event,
    pause_apply,
    state_of,
)
from sagas.engine.wakeup import wake_workers
from sagas.engine.webhooks import Notify, SagaFacts
from sagas.errors import Conflict, Invalid
from sagas.jsonutil import MAX_VALUE_DEPTH, json_depth, merge_patch
from sagas.models import ErrorCode, SagaDefinition, SagaInstance, SagaStatus, StepStatus


@dataclass(frozen=True)
class Actor:
    """Who asked for a change, as the history records it: a role (`client`, `internal`,
    or `system` for the engine) and the `key_id` of the key used (never the key)."""

    role: str
    key_id: str = ""


SYSTEM = Actor("system")


def saga_cancel(*, saga_id, actor: Actor = SYSTEM, reason: str = "") -> SagaInstance:
    """pending → cancelled at once; running → compensating → cancelled (a promise kept
    whatever the call in flight does); paused → compensating → cancelled.

    Raises Conflict (HTTP 409, with the current status) when the saga compensates, is
    terminal, or already has an accepted cancel.
    """
    with transaction.atomic():
        saga = saga_locked(saga_id)
        refusal = cancel_refusal(saga.status, saga.cancel_requested)
        if refusal is not None:
            raise Conflict(refusal, saga_status=saga.status)
        now = timezone.now()
        events = [_action_event("cancel_requested", now, actor, reason)]
        if saga.status == SagaStatus.PENDING and saga.lease_token is None:
            events.append(_cancel_unstarted(saga, now))
            # No worker will see it: its `SAGA finished` line and metrics are emitted here.
            transaction.on_commit(lambda: event_emit(_finished_event(saga)))
        elif saga.status == SagaStatus.PAUSED or _waiting_unheld(saga):
            events += _state_change(saga, now, _cancel_paused)
        else:
            _request_cancel(saga, now)
        _history_write(saga, events)
    _after(saga, "cancel", actor, reason)
    return saga


def _cancel_unstarted(saga: SagaInstance, now: datetime) -> dict:
    for step in saga.steps:
        step["status"] = StepStatus.SKIPPED
    saga.status = SagaStatus.CANCELLED
    saga.cancel_requested = True
    saga.error = {
        "code": ErrorCode.CANCELLED,
        "step": None,
        "message": "Cancelled before it started.",
    }
    saga.finished_at = now
    saga.next_attempt_at = None
    saga.pause_request = None
    saga_update(
        saga,
        ["steps", "status", "cancel_requested", "pause_request", "error", "finished_at"]
        + ["next_attempt_at"],
    )
    return history_event("finished", now, details={"status": saga.status, "error": "cancelled"})


def _waiting_unheld(saga: SagaInstance) -> bool:
    """Its step waits for a callback (§9.4): no call in flight, nobody holds it."""
    index = saga.current_step
    waiting = 0 <= index < len(saga.steps) and saga.steps[index]["status"] == StepStatus.WAITING
    return waiting and saga.status == SagaStatus.RUNNING and saga.lease_token is None


def _cancel_paused(state: SagaState, now: datetime) -> None:
    # Nobody holds a paused saga, nor one whose step waits for its callback: its
    # compensation begins here (the waiting step undone as uncertain, then the earlier
    # ones) and a worker carries it on.
    state.cancel_requested = True
    state.pause_request = None  # answered: the cancel wins
    cancel_apply(state, now)


def _finished_event(saga: SagaInstance) -> dict:
    took = saga.finished_at - saga.created_at
    duration_ms = round(took.total_seconds() * 1000, 3)
    return _log_event(saga, "finished", duration_ms=duration_ms, error=saga.error["code"])


def _log_event(saga: SagaInstance, event: str, **extra) -> dict:
    """A `SAGA …` line's fields (store/events.py) for a change made here."""
    fields = {
        "event": event,
        "saga_id": str(saga.id),
        "definition": saga.definition_name,
        "status": str(saga.status),
        "step": None,
        "phase": str(saga.phase),
        "attempt": None,
        "outcome": str(saga.status),
        "duration_ms": None,
        "error": None,
    }
    return fields | extra


def _request_cancel(saga: SagaInstance, now: datetime) -> None:
    saga.cancel_requested = True
    fields = ["cancel_requested"]
    if _unheld(saga, now):
        # Nobody holds it (e.g. waiting out a retry backoff): make it due now.
        saga.next_attempt_at = now
        fields.append("next_attempt_at")
    saga_update(saga, fields)


def saga_retry(*, saga_id, actor: Actor = SYSTEM, reason: str = "") -> SagaInstance:
    """failed → compensating, resuming the stuck compensation with a fresh attempt budget.

    The step keeps its attempt count (logs stay numbered); `retry_base` records where the
    new budget starts. Raises Conflict unless the saga is `failed` (HTTP 409).
    """
    with transaction.atomic():
        saga = saga_locked(saga_id)
        if saga.status != SagaStatus.FAILED:
            raise Conflict(
                f"Only failed sagas can be retried; this one is {saga.status}.",
                saga_status=saga.status,
            )
        now = timezone.now()
        # In a parallel group, every member whose compensation failed (§9.3).
        for index in group_span(saga.steps, saga.current_step):
            step = saga.steps[index]
            if index == saga.current_step or step["status"] == StepStatus.COMPENSATION_FAILED:
                step["status"] = StepStatus.COMPENSATING
                step["retry_base"] = step["compensation_attempts"]
        saga.status = SagaStatus.COMPENSATING
        saga.finished_at = None
        saga.next_attempt_at = now
        saga_update(saga, ["steps", "status", "finished_at", "next_attempt_at"])
        _history_write(saga, [_action_event("retried", now, actor, reason)])
    _after(saga, "retry", actor, reason)
    return saga


def saga_pause(*, saga_id, actor: Actor, reason: str = "") -> SagaInstance:
    """pending/running → paused: at once when no worker holds the saga (not started yet,
    or waiting for a retry: the wait is cut short); else at the worker's next transition
    (the call in flight completes and is recorded). Conflict (409) in any other status,
    when a pause is pending, or after an accepted cancel."""
    with transaction.atomic():
        saga = saga_locked(saga_id)
        refusal = pause_refusal(saga.status, saga.cancel_requested, saga.pause_request)
        if refusal is not None:
            raise Conflict(refusal, saga_status=saga.status)
        now = timezone.now()
        saga.pause_request = {"actor": actor.role, "key_id": actor.key_id, "reason": reason}
        if saga.lease_token is None:
            events = _state_change(saga, now, _pause_now)
            _history_write(saga, events)
        else:
            fields = ["pause_request"]
            if _unheld(saga, now):
                # Its worker was lost: due now, so that another settles its call, then pauses.
                saga.next_attempt_at = now
                fields.append("next_attempt_at")
            saga_update(saga, fields)
    _after(saga, "pause", actor, reason)
    return saga


def _pause_now(state: SagaState, now: datetime) -> None:
    pause_apply(state, now, state.pause_request)


def saga_resume(
    *,
    saga_id,
    actor: Actor,
    reason: str = "",
    input_patch: Any = None,
    from_step: str | None = None,
    skip: dict | None = None,
) -> SagaInstance:
    """paused → running: continue where it stopped, with the input patched (RFC 7396),
    from an earlier step (rewinding), or skipping the step it stopped at (DESIGN §9.2).
    Conflict (409) unless paused; Invalid (400) for a request that cannot be done, and
    then nothing changes."""
    with transaction.atomic():
        saga = saga_locked(saga_id)
        refusal = resume_refusal(saga.status)
        if refusal is not None:
            raise Conflict(refusal, saga_status=saga.status)
        fields = []
        if input_patch is not None:
            saga.input = _patched_input(saga.input, input_patch)
            fields.append("input")
        resume = Resume(from_step=from_step, skip=skip, patched=input_patch is not None)
        now = timezone.now()
        details = {"input_patch": input_patch, "from_step": from_step, "skip": skip}
        details = {key: value for key, value in details.items() if value is not None}
        event = _action_event("resumed", now, actor, reason, details or None)
        events = _state_change(saga, now, lambda state, now: resume_apply(state, resume, now))
        if fields:
            saga_update(saga, fields)
        _history_write(saga, [event, *events])
    _after(saga, "skip" if skip is not None else "resume", actor, reason)
    return saga


def _patched_input(saga_input: dict, patch: Any) -> dict:
    if not isinstance(patch, dict):
        raise Invalid("Must be a JSON object (an RFC 7396 merge patch).", field="input_patch")
    patched = merge_patch(saga_input, patch)
    if json_depth(patched) > MAX_VALUE_DEPTH:
        raise Invalid(
            f"The patched input is nested deeper than {MAX_VALUE_DEPTH} levels.",
            field="input_patch",
        )
    size = len(canonical_bytes(patched))
    if size > settings.SAGA_MAX_INPUT_BYTES:
        raise Invalid(
            f"The patched input is {size} bytes; SAGA_MAX_INPUT_BYTES is "
            f"{settings.SAGA_MAX_INPUT_BYTES}.",
            field="input_patch",
        )
    return patched


def canonical_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _state_change(saga: SagaInstance, now: datetime, change) -> list[dict]:
    """Apply a pure change (transitions/repair) to the locked row's state and write it;
    the history events it caused. The row is due now if the change left work to do."""
    state = _state_of(saga)
    change(state, now)
    for name in PERSISTED:
        setattr(saga, name, getattr(state, name))
    saga.lease_token, saga.lease_owner, saga.lease_expires_at = None, "", None
    saga_update(saga, [*PERSISTED, "lease_token", "lease_owner", "lease_expires_at"])
    transaction.on_commit(wake_workers)
    return state.events


def _state_of(saga: SagaInstance) -> SagaState:
    return state_of({**vars(saga), "steps": [dict(step) for step in saga.steps]})


def _history_write(saga: SagaInstance, events: list[dict]) -> None:
    """The history rows of a change, and the webhook events they cause (DESIGN §9.5), in
    the caller's transaction."""
    history_insert(saga.id, events)
    if not events:
        return
    notify = SagaDefinition.objects.filter(id=saga.definition_id).values_list("notify")
    notify = Notify.of(notify.first()[0])
    if notify is None:
        return
    facts = SagaFacts(
        str(saga.id), saga.definition_name, saga.definition_version, saga.status, saga.error
    )
    rows = outbox_rows(events, facts, notify)
    if rows:
        outbox_insert(saga.id, rows, timezone.now())
        transaction.on_commit(WRITTEN.set)


def _unheld(saga: SagaInstance, now: datetime) -> bool:
    return saga.lease_token is None or saga.lease_expires_at <= now


def _action_event(event, now, actor: Actor, reason: str, details=None) -> dict:
    return history_event(
        event, now, actor=actor.role, key_id=actor.key_id, reason=reason, details=details
    )


def _after(saga: SagaInstance, action: str, actor: Actor, reason: str) -> None:
    """Once committed: wake the workers, and one `SAGA <action>` line with who and why."""
    event = _log_event(saga, action, actor=actor.role, key_id=actor.key_id, reason=reason)
    transaction.on_commit(wake_workers)
    transaction.on_commit(lambda: event_emit(event))
