"""Operator and client requests that change a saga from outside the worker: cancel, retry.

The API writes only what a worker never writes (`cancel_requested`), or rows no worker
holds (a pending saga not yet claimed, a failed saga). Each change is one short
transaction on the locked row; the worker picks the saga up at its next transition.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from sagas.engine.store import event_emit, saga_locked, saga_update
from sagas.engine.transitions import cancel_refusal
from sagas.engine.wakeup import wake_workers
from sagas.errors import Conflict
from sagas.models import ErrorCode, SagaInstance, SagaStatus, StepStatus


@dataclass(frozen=True)
class Actor:
    """Who asked for a change, as the history records it: a role (`client`, `internal`,
    or `system` for the engine) and the `key_id` of the key used (never the key)."""

    role: str
    key_id: str = ""


SYSTEM = Actor("system")


def saga_cancel(*, saga_id) -> SagaInstance:
    """pending → cancelled at once; running → compensating → cancelled (a promise kept
    whatever the call in flight does).

    Raises Conflict (HTTP 409, with the current status) when the saga compensates, is
    terminal, or already has an accepted cancel.
    """
    with transaction.atomic():
        saga = saga_locked(saga_id)
        _cancel_check(saga)
        if saga.status == SagaStatus.PENDING and saga.lease_token is None:
            _cancel_unstarted(saga)
            # No worker will see it: its `SAGA finished` line and metrics are emitted here.
            transaction.on_commit(lambda: event_emit(_finished_event(saga)))
        else:
            _request_cancel(saga)
    transaction.on_commit(wake_workers)
    return saga


def _cancel_check(saga: SagaInstance) -> None:
    refusal = cancel_refusal(saga.status, saga.cancel_requested)
    if refusal is not None:
        raise Conflict(refusal, saga_status=saga.status)


def _cancel_unstarted(saga: SagaInstance) -> None:
    now = timezone.now()
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
    saga_update(
        saga, ["steps", "status", "cancel_requested", "error", "finished_at", "next_attempt_at"]
    )


def _finished_event(saga: SagaInstance) -> dict:
    took = saga.finished_at - saga.created_at
    return {
        "event": "finished",
        "saga_id": str(saga.id),
        "definition": saga.definition_name,
        "status": str(saga.status),
        "step": None,
        "phase": str(saga.phase),
        "attempt": None,
        "outcome": str(saga.status),
        "duration_ms": round(took.total_seconds() * 1000, 3),
        "error": saga.error["code"],
    }


def _request_cancel(saga: SagaInstance) -> None:
    saga.cancel_requested = True
    fields = ["cancel_requested"]
    if saga.lease_token is None or saga.lease_expires_at <= timezone.now():
        # Nobody holds it (e.g. waiting out a retry backoff): make it due now.
        saga.next_attempt_at = timezone.now()
        fields.append("next_attempt_at")
    saga_update(saga, fields)


def saga_retry(*, saga_id) -> SagaInstance:
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
        step = saga.steps[saga.current_step]
        step["status"] = StepStatus.COMPENSATING
        step["retry_base"] = step["compensation_attempts"]
        saga.status = SagaStatus.COMPENSATING
        saga.finished_at = None
        saga.next_attempt_at = timezone.now()
        saga_update(saga, ["steps", "status", "finished_at", "next_attempt_at"])
    transaction.on_commit(wake_workers)
    return saga
