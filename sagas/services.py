"""Writes of the REST API: store a definition version, start a saga, redeliver a webhook.

(Cancel and retry live in `sagas.engine.control`: they change engine state.)
"""

import json
import logging
import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from saga_orchestrator.request_context import current_request_id
from sagas import selectors
from sagas.engine import store
from sagas.engine.control import SYSTEM, Actor
from sagas.engine.plan import steps_initial
from sagas.engine.store.outbox import outbox_redeliver
from sagas.engine.trace_context import TraceContext, trace_new
from sagas.errors import Conflict
from sagas.jsonutil import content_hash
from sagas.models import (
    OnFailure,
    Phase,
    SagaDefinition,
    SagaInstance,
    SagaStatus,
    WebhookEvent,
)
from sagas.observability.metrics import record_saga_started

logger = logging.getLogger("sagas.api")
# Concurrent posts of one name race for the next version number; the losers look again.
# Every round stores one of them, so N posts at once need at most N rounds.
VERSION_RACE_RETRIES = 32


def definition_create(*, data: dict) -> tuple[SagaDefinition, bool]:
    """Store normalised `data` as the next version of its name.

    Returns (definition, created). When `data` equals the latest version, that version is
    returned and nothing is written.
    """
    digest = content_hash(_hashed_form(data))
    for _ in range(VERSION_RACE_RETRIES):
        latest = selectors.definition_get(name=data["name"])
        if latest is not None and latest.content_hash == digest:
            return latest, False
        try:
            with transaction.atomic():
                definition = SagaDefinition.objects.create(
                    name=data["name"],
                    version=latest.version + 1 if latest else 1,
                    description=data["description"],
                    timeout_seconds=data["timeout_seconds"],
                    on_failure=data["on_failure"],
                    steps=data["steps"],
                    notify=data.get("notify"),
                    content_hash=digest,
                )
        except IntegrityError:
            continue  # another request took this version number
        logger.info(
            "definition stored",
            extra={
                "event": "definition_created",
                "definition": definition.name,
                "version": definition.version,
            },
        )
        return definition, True
    raise Conflict("The definition is being changed concurrently; try again.")


def _hashed_form(data: dict) -> dict:
    """What "the same definition" compares: the normalised data without the default
    `on_failure`, so that a definition stored before that option existed is still the
    same when posted again unchanged."""

    def without_default(values: dict) -> dict:
        if values.get("on_failure") == OnFailure.COMPENSATE:
            return {key: value for key, value in values.items() if key != "on_failure"}
        return values

    def entry(step: dict) -> dict:
        if "parallel" in step:  # a group (DESIGN §9.3): its members as the steps
            return step | {"parallel": [without_default(m) for m in step["parallel"]]}
        return without_default(step)

    return without_default(data) | {"steps": [entry(s) for s in data["steps"]]}


def saga_start(
    *,
    definition: str,
    version: int | None,
    saga_input: dict,
    idempotency_key: str | None,
    request_id: str | None = None,
    trace: TraceContext | None = None,
    actor: Actor = SYSTEM,
) -> tuple[SagaInstance, bool]:
    """Start a saga of `definition` (latest version unless `version`).

    Returns (saga, created). With an `idempotency_key` already used for the same body the
    existing saga is returned (created=False); for a different body, Conflict.
    `request_id` (default: the current request's) travels with the saga: every participant
    call sends it as X-Request-ID and the saga's log lines carry it. So does `trace`
    (default: a new one): each call's `traceparent` and `tracestate`, `trace_id` in the logs.
    `actor`: who started it, for its history's `started` event.
    """
    request_id = request_id or current_request_id()
    trace = trace or trace_new()
    fingerprint = content_hash({"definition": definition, "version": version, "input": saga_input})
    # The INSERT itself tells whether the key is new (its unique index): a replay costs one
    # failed statement and a look-up, a first use no look-up at all.
    try:
        saga = _saga_insert(
            definition, version, saga_input, idempotency_key, fingerprint, request_id, trace, actor
        )
    except (IntegrityError, ValidationError):
        # IntegrityError: the key is taken, by an earlier start or a concurrent one that
        # committed first. ValidationError (no such definition or version): a used key
        # still answers as a replay, 200 or 409, as it did before the definition changed.
        existing = _idempotent_match(idempotency_key, fingerprint) if idempotency_key else None
        if existing is None:
            raise
        return existing, False
    _log_started(saga, trace)
    record_saga_started()  # a new saga only: an idempotent replay returned above
    return saga, True


def _saga_insert(
    name: str,
    version: int | None,
    saga_input: dict,
    key: str | None,
    fingerprint: str,
    request_id: str,
    trace: TraceContext,
    actor: Actor,
) -> SagaInstance:
    """Commit the new saga and wake the workers (DESIGN §5: a 202 means committed)."""
    if version is not None and not selectors.version_in_range(version):
        _definition_for_start(name, version)  # raises the 400: no such version (or name)
    # The store: on PostgreSQL the definition lookup, the INSERT and the NOTIFY as one
    # statement, its own transaction (a savepoint only inside a caller's transaction).
    params = {
        "name": name,
        "version": version,
        "id": uuid.uuid4(),
        "status": SagaStatus.PENDING.value,
        "input": json.dumps(saga_input),
        # Every step's initial state, named by the statement (a parallel group's members
        # get their `group` there too).
        "step": json.dumps(steps_initial([{"name": ""}])[0]),
        "phase": Phase.ACTION.value,
        "now": timezone.now(),
        "key": key or None,
        "fingerprint": fingerprint,
        "request_id": request_id,
        "traceparent": trace.traceparent,
        "tracestate": trace.state,
        "actor": actor.role,
        "key_id": actor.key_id,
    }
    saga = store.saga_insert(params=params)
    if saga is None:
        _definition_for_start(name, version)  # raises the 400 that says what is missing
        raise ValidationError({"definition": [f"Unknown saga definition '{name}'."]})
    return saga


def _idempotent_match(key: str, fingerprint: str) -> SagaInstance | None:
    existing = SagaInstance.objects.filter(idempotency_key=key).first()
    if existing is not None and existing.request_fingerprint != fingerprint:
        raise Conflict("This Idempotency-Key was already used with a different request body.")
    return existing


def _definition_for_start(name: str, version: int | None) -> SagaDefinition:
    found = selectors.definition_get(name=name, version=version)
    if found is not None:
        return found
    if version is not None and selectors.definition_get(name=name) is not None:
        raise ValidationError({"version": [f"Definition '{name}' has no version {version}."]})
    raise ValidationError({"definition": [f"Unknown saga definition '{name}'."]})


def _log_started(saga: SagaInstance, trace: TraceContext) -> None:
    logger.info(
        "SAGA started",
        extra={
            "event": "saga_started",
            "saga_id": str(saga.id),
            "definition": saga.definition_name,
            "version": saga.definition_version,
            "step": None,
            "phase": None,
            "attempt": None,
            "outcome": None,
            "duration_ms": None,
            "request_id": saga.request_id,
            "trace_id": trace.trace_id,
        },
    )


def webhook_redeliver(*, event_id) -> WebhookEvent:
    """A dead or delivered webhook event pending again, due now, with a fresh attempt
    budget. Conflict (409) when it is pending already; DoesNotExist (404) when unknown."""
    event = outbox_redeliver(event_id=event_id, now=timezone.now())
    if event is not None:
        logger.info(
            "webhook redelivery requested",
            extra={"event": "webhook_redeliver", "webhook_id": str(event_id)},
        )
        return event
    current = WebhookEvent.objects.filter(event_id=event_id).values_list("status").first()
    if current is None:
        raise WebhookEvent.DoesNotExist(event_id)
    raise Conflict(f"The event is {current[0]}: only dead or delivered events are redelivered.")
