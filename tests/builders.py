"""Builders of database rows for tests (plain ORM, no API)."""

import uuid
from datetime import timedelta

from django.utils import timezone

from sagas.models import (
    TERMINAL_STATUSES,
    SagaAttempt,
    SagaDefinition,
    SagaInstance,
    WorkerHeartbeat,
)


def definition_create(name: str = "checkout") -> SagaDefinition:
    version = SagaDefinition.objects.filter(name=name).count() + 1
    return SagaDefinition.objects.create(
        name=name,
        version=version,
        timeout_seconds=300,
        steps=[{"name": "reserve", "action": {"method": "POST", "url": "http://inv/r"}}],
        content_hash=uuid.uuid4().hex,
    )


def saga_create(
    definition: SagaDefinition,
    *,
    status: str = "pending",
    finished_days_ago: float | None = None,
    next_attempt_in: float | None = 0.0,
    attempts: int = 0,
) -> SagaInstance:
    now = timezone.now()
    finished_at = None
    if finished_days_ago is not None:
        finished_at = now - timedelta(days=finished_days_ago)
    terminal = status in TERMINAL_STATUSES
    saga = SagaInstance.objects.create(
        definition=definition,
        definition_name=definition.name,
        definition_version=definition.version,
        status=status,
        steps=[
            {
                "name": "reserve",
                "status": "pending",
                "attempts": 0,
                "compensation_attempts": 0,
                "response": None,
                "status_code": None,
                "error": None,
            }
        ],
        finished_at=finished_at,
        next_attempt_at=None
        if terminal or next_attempt_in is None
        else now + timedelta(seconds=next_attempt_in),
    )
    for number in range(1, attempts + 1):
        SagaAttempt.objects.create(
            saga=saga,
            step="reserve",
            step_index=0,
            phase="action",
            attempt=number,
            method="POST",
            url="http://inv/r",
            status_code=503,
            outcome="retryable_error",
            started_at=now,
            duration_ms=5.0,
        )
    return saga


def heartbeat_create(worker_id: str, *, seconds_ago: float) -> WorkerHeartbeat:
    seen = timezone.now() - timedelta(seconds=seconds_ago)
    return WorkerHeartbeat.objects.create(
        worker_id=worker_id, hostname="test", pid=1, started_at=seen, last_seen_at=seen
    )
