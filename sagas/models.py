"""Durable state: definitions, saga instances (with their step states), the attempt log.

Step state lives in the instance row (`steps`, a JSON list) so that a worker advances a
saga with one fenced UPDATE per transition instead of a write per step row.
"""

import uuid

from django.db import models
from django.db.models import Q


class SagaStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"
    FAILED = "failed"
    # Waiting for an operator (DESIGN §9.2): not terminal, never claimed, resumed by hand.
    PAUSED = "paused"


TERMINAL_STATUSES = (
    SagaStatus.COMPLETED,
    SagaStatus.COMPENSATED,
    SagaStatus.CANCELLED,
    SagaStatus.FAILED,
)
ACTIVE_STATUSES = (SagaStatus.PENDING, SagaStatus.RUNNING, SagaStatus.COMPENSATING)


class StepStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    SKIPPED = "skipped"
    # An asynchronous action answered 202: its result comes by callback (DESIGN §9.4).
    WAITING = "waiting"


class ErrorCode(models.TextChoices):
    STEP_FAILED = "step_failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    COMPENSATION_FAILED = "compensation_failed"


class OnFailure(models.TextChoices):
    """What a step's final failure does (definition or step option `on_failure`)."""

    COMPENSATE = "compensate"
    PAUSE = "pause"


class Phase(models.TextChoices):
    ACTION = "action"
    COMPENSATION = "compensation"


class Outcome(models.TextChoices):
    SUCCEEDED = "succeeded"
    RETRYABLE_ERROR = "retryable_error"
    PERMANENT_ERROR = "permanent_error"
    # The worker died during the call (§6a): logged, but not counted as an attempt.
    INTERRUPTED = "interrupted"


class SagaDefinition(models.Model):
    """One immutable version of a named definition; `steps` is the normalised list."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    description = models.TextField(blank=True, default="")
    timeout_seconds = models.FloatField()
    # The definition's own default for its steps (each step also carries its effective one).
    on_failure = models.CharField(
        max_length=20,
        choices=OnFailure.choices,
        default=OnFailure.COMPENSATE,
        db_default="compensate",
    )
    steps = models.JSONField()
    # Lifecycle webhooks (DESIGN §9.5): {"url", "events": [types]} normalised, or null.
    notify = models.JSONField(null=True, blank=True)
    # sha256 of the canonical normalised content: "identical to the latest version".
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="definition_name_version"),
        ]
        # Latest version of a name: ORDER BY version DESC WHERE name = … (the unique
        # constraint's index serves it).
        ordering = ["name", "-version"]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class SagaInstance(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index: nothing reads sagas by definition id (lists filter on `definition_name`),
    # and every index is one more write per insert and per non-HOT update.
    definition = models.ForeignKey(
        SagaDefinition, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # Copied from the definition so that lists filter without a join.
    definition_name = models.CharField(max_length=100)
    definition_version = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=SagaStatus.choices, default=SagaStatus.PENDING)
    input = models.JSONField(default=dict)
    # [{"name", "status", "attempts", "compensation_attempts", "response",
    #   "status_code", "error"}] in definition order; the engine adds its own marks
    #   ("uncertain", "in_flight", "interruptions", "compensation_interruptions").
    steps = models.JSONField(default=list)
    error = models.JSONField(null=True, blank=True)
    # Why the saga compensates (engine-internal): the final `error` once compensation ends,
    # kept apart because `error` says compensation_failed while the saga waits in `failed`.
    cause = models.JSONField(null=True, blank=True)

    # Engine cursor: which step and phase runs next, and how many attempts it has had.
    current_step = models.IntegerField(default=0)
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.ACTION)
    cancel_requested = models.BooleanField(default=False)
    # An accepted pause the worker holding the saga has yet to apply: who asked and why
    # ({"actor", "key_id", "reason"}), for the `paused` history event. Null otherwise;
    # cleared by resume. Fences the worker's writes like `cancel_requested`.
    pause_request = models.JSONField(null=True, blank=True)
    # When it was paused: the deadline moves on by the paused time at resume.
    paused_at = models.DateTimeField(null=True, blank=True)
    # A resume `from_step` rewinding: the index compensation walks back to before the saga
    # runs forward again from it (null when not rewinding).
    rewind_step = models.IntegerField(null=True, blank=True)
    # A participant's callback not applied yet (DESIGN §9.4, engine/callbacks.py): the
    # canonical JSON text of {"step", "run", "outcome", "response", "error", "at"}. Written
    # only by the callback endpoint; a worker's fenced write checks it is unchanged (text,
    # so the check is a plain comparison on both databases) and clears it once applied.
    callback = models.TextField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    # Lease: the worker holding `lease_token` until `lease_expires_at` is the only writer.
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    # The X-Request-ID of the POST that started the saga: sent on every participant call
    # and stamped on the saga's log lines ("" for sagas started before it was kept).
    request_id = models.CharField(max_length=128, blank=True, default="")
    # The W3C trace of the saga (engine/trace_context.py): the start's valid `traceparent`
    # or one the service made, and its `tracestate` ("" for sagas started before).
    traceparent = models.CharField(max_length=55, blank=True, default="")
    tracestate = models.CharField(max_length=512, blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="saga_idempotency_key",
            ),
        ]
        # Indexes only on what the claim and the API's reads need. A transition changes
        # none of their columns except at the start and the end (status, finished_at,
        # next_attempt_at on release), so PostgreSQL updates the row in place (HOT) given
        # room on its page: the table's fillfactor (migration 0005).
        indexes = [
            # Claim of due work: WHERE status IN (active) AND next_attempt_at <= now
            # ORDER BY next_attempt_at — partial, so finished sagas cost nothing.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "running", "compensating"]),
                name="saga_due_work",
            ),
            # GET /api/sagas/ newest first, and the cleanup of old finished sagas.
            models.Index(fields=["-created_at"], name="saga_created"),
            # GET /api/sagas/?status=… newest first; status counts.
            models.Index(fields=["status", "-created_at"], name="saga_status_created"),
            # GET /api/sagas/?definition=… newest first.
            models.Index(fields=["definition_name", "-created_at"], name="saga_definition_created"),
            # Status page: sagas finished in the last hour.
            models.Index(fields=["finished_at"], name="saga_finished"),
        ]

    def __str__(self) -> str:
        return f"{self.definition_name}:{self.id} ({self.status})"


class SagaAttempt(models.Model):
    """One participant call, written once it ended, with its outcome (append-only). The
    call in flight is its step's `in_flight` mark in the saga row (engine/store)."""

    saga = models.ForeignKey(SagaInstance, on_delete=models.CASCADE, related_name="attempts")
    step = models.CharField(max_length=100)
    step_index = models.IntegerField()
    phase = models.CharField(max_length=20, choices=Phase.choices)
    attempt = models.PositiveIntegerField()
    # The step's run (1 for its first; each resume that starts the step again adds one).
    run = models.PositiveIntegerField(default=1, db_default=1)
    method = models.CharField(max_length=10)
    url = models.TextField()
    status_code = models.IntegerField(null=True, blank=True)
    # "interrupted" once a worker found its caller dead; null only on a row an earlier
    # version inserted while its call was in flight.
    outcome = models.CharField(max_length=20, choices=Outcome.choices, null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField(null=True, blank=True)
    # The call in full (DESIGN §9.6, engine/call_log.py): the headers sent (credentials as
    # "***"), each body as JSON or text cut at SAGA_LOG_BODY_BYTES; `truncated` if cut.
    request_headers = models.JSONField(null=True, blank=True)
    request_body = models.JSONField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    truncated = models.BooleanField(default=False)

    class Meta:
        # GET /api/sagas/{id}/logs/: WHERE saga_id = … ORDER BY id (the FK index serves it).
        ordering = ["id"]


class SagaEvent(models.Model):
    """One entry of a saga's history (DESIGN §9.2), written in the same transaction as the
    change it describes: system events and operator actions, in order (append-only)."""

    saga = models.ForeignKey(SagaInstance, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    event = models.CharField(max_length=32)
    step = models.CharField(max_length=100, null=True, blank=True)
    actor = models.CharField(max_length=16)  # system | client | internal
    key_id = models.CharField(max_length=16, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="")
    details = models.JSONField(null=True, blank=True)

    class Meta:
        # GET /api/sagas/{id}/history/: WHERE saga_id = … ORDER BY id (the FK index).
        ordering = ["id"]


class WebhookStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class WebhookEvent(models.Model):
    """The outbox (DESIGN §9.5): one lifecycle event of a saga whose definition has
    `notify`, written in the same transaction as the change it reports, then delivered by
    the saga workers (engine/delivery.py), in `id` order per saga."""

    # The body's `id` and the X-Saga-Event-Id header.
    event_id = models.UUIDField(unique=True, editable=False)
    # No index of its own: (saga, id) below serves both the API's filter and the order.
    saga = models.ForeignKey(
        SagaInstance, on_delete=models.CASCADE, related_name="webhooks", db_index=False
    )
    type = models.CharField(max_length=32)
    url = models.TextField()
    # The body as delivered: {"id", "type", "saga_id", "definition", "definition_version",
    # "status", "at", "data"}.
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=WebhookStatus.choices, default=WebhookStatus.PENDING
    )
    # Deliveries made (claims), the first included; reset by a redelivery.
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # The delivering worker's claim: another may deliver once it expired (a crash).
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The delivery claim: due pending events (partial: delivered ones cost nothing).
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_due",
            ),
            # A saga's events in order (an earlier pending one holds back the later ones).
            models.Index(fields=["saga", "id"], name="webhook_saga"),
            # GET /api/events/?status=… newest first.
            models.Index(fields=["status", "-id"], name="webhook_status"),
        ]


class WorkerHeartbeat(models.Model):
    """A live saga worker; alive while `last_seen_at` is younger than 3 intervals."""

    worker_id = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=200)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
