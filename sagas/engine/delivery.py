"""Delivery of lifecycle webhooks (DESIGN §9.5): one thread in each saga worker process.

A boring loop: `tick()` claims the next deliverable event from the outbox (store/outbox.py:
due, pending, the oldest pending one of its saga, leased to this worker), POSTs it signed
with the participant HTTP client (its host rules and SSRF checks included), and records the
outcome: `delivered` on a 2xx, else due again after SAGA_WEBHOOK_RETRY_DELAY doubling up to
an hour, `dead` once SAGA_WEBHOOK_MAX_ATTEMPTS deliveries were made. The thread is apart
from the saga threads, so a slow receiver never delays a saga.

At least once: the claim is a lease longer than the delivery's timeout; a worker killed
mid-delivery leaves the event to the next worker once the lease expired (the claim counts
the attempt, so a crash uses one). Nothing is sent while SAGA_WEBHOOK_SECRET is unset.
"""

import contextlib
import json
import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection
from django.utils import timezone

from saga_orchestrator.secrets import webhook_secret_problem
from sagas.engine.participants import ParticipantRequest, participant_call
from sagas.engine.store import event_emit
from sagas.engine.store.outbox import WRITTEN, WebhookClaim, outbox_claim, outbox_settle
from sagas.engine.webhooks import delivery_delay, signature_header
from sagas.models import Outcome, WebhookStatus

logger = logging.getLogger("sagas.engine")

# The body's keys, in this order (the stored JSON does not keep an order).
BODY_KEYS = ("id", "type", "saga_id", "definition", "definition_version", "status", "at", "data")
# A receiver has this long to answer (and at most half the lease, so the lease outlives
# every delivery: no second worker sends the event while the first still may).
TIMEOUT_SECONDS = 10.0
# Of a receiver's answer only the status matters; a little of the body names an error.
MAX_RESPONSE_BYTES = 4096
DB_ERRORS = (DatabaseError, InterfaceError)


def body_bytes(payload: dict) -> bytes:
    """The raw body POSTed and signed."""
    body = {key: payload.get(key) for key in BODY_KEYS}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class Delivery:
    def __init__(self, *, lease_seconds: float, poll_seconds: float):
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.timeout = min(TIMEOUT_SECONDS, lease_seconds / 2)
        self._secret_warned = False

    def tick(self) -> bool:
        """Deliver one due event; False when none was (or webhooks cannot be signed)."""
        problem = webhook_secret_problem()
        if problem:
            self._warn_unsigned(problem)
            return False
        claim = outbox_claim(now=timezone.now(), lease_seconds=self.lease_seconds)
        if claim is None:
            return False
        self.deliver(claim, settings.SAGA_WEBHOOK_SECRET)
        return True

    def deliver(self, claim: WebhookClaim, secret: str) -> None:
        if claim.attempts > settings.SAGA_WEBHOOK_MAX_ATTEMPTS:
            # Its last allowed delivery was cut short by a lost worker.
            error = "no attempts left (a worker was lost during the last delivery)"
            self._settle(claim, WebhookStatus.DEAD, None, error, 0.0)
            return
        raw = body_bytes(claim.payload)
        headers = {
            "Content-Type": "application/json",
            "X-Saga-Event-Id": str(claim.event_id),
            "X-Saga-Signature": signature_header(secret, int(time.time()), raw),
        }
        request = ParticipantRequest("POST", claim.url, headers, raw, self.timeout)
        result = participant_call(request, max_bytes=MAX_RESPONSE_BYTES)
        if result.outcome == Outcome.SUCCEEDED:
            status, error = WebhookStatus.DELIVERED, None
        elif claim.attempts >= settings.SAGA_WEBHOOK_MAX_ATTEMPTS:
            status, error = WebhookStatus.DEAD, result.error
        else:
            status, error = WebhookStatus.PENDING, result.error
        self._settle(claim, status, result.status_code, error, result.duration_ms)

    def _settle(self, claim, status, status_code, error, duration_ms) -> None:
        delay = None
        if status == WebhookStatus.PENDING:
            delay = delivery_delay(claim.attempts, settings.SAGA_WEBHOOK_RETRY_DELAY)
        settled = outbox_settle(
            claim=claim,
            status=status,
            now=timezone.now(),
            status_code=status_code,
            error=error,
            delay_seconds=delay,
        )
        if not settled:
            # Our lease ran out and another worker took the event over: its outcome wins.
            logger.warning("webhook lease lost", extra={"webhook_id": str(claim.event_id)})
            return
        outcome = "retry" if status == WebhookStatus.PENDING else str(status)
        _emit(claim, outcome, status_code, error, duration_ms)

    # The thread -----------------------------------------------------------------------

    def serve(self, stopping: threading.Event) -> None:
        """Deliver while there is something to deliver; otherwise wait for a write of this
        process (WRITTEN) or the poll interval. Never raises."""
        backoff = 0.1
        try:
            while not stopping.is_set():
                try:
                    worked = self.tick()
                    backoff = 0.1
                except DB_ERRORS as exc:
                    logger.warning("webhooks: database unavailable, retrying: %s", exc)
                    _connection_drop()
                    stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except Exception:
                    logger.exception("webhook delivery failed unexpectedly")
                    stopping.wait(1.0)
                    continue
                if not worked:
                    WRITTEN.wait(self.poll_seconds)
                    WRITTEN.clear()
        finally:
            _connection_drop()

    def _warn_unsigned(self, problem: str) -> None:
        if not self._secret_warned:
            self._secret_warned = True
            logger.warning("webhooks not delivered: %s", problem)


def _emit(claim: WebhookClaim, outcome: str, status_code, error, duration_ms: float) -> None:
    """The `SAGA webhook …` line of a delivery (outcome delivered, retry or dead), and the
    listeners (metrics)."""
    payload = claim.payload
    event = {
        "event": "webhook",
        "saga_id": str(claim.saga_id),
        "definition": payload.get("definition"),
        "step": None,
        "phase": None,
        "attempt": claim.attempts,
        "outcome": outcome,
        "duration_ms": round(duration_ms, 3),
        "status_code": status_code,
        "error": error,
        "webhook_id": str(claim.event_id),
        "webhook_type": claim.type,
    }
    line = f"webhook {claim.type} {event['definition']} {event['saga_id']} "
    line += f"#{claim.attempts} {outcome} {duration_ms:.1f}ms"
    event_emit(event, line)


def _connection_drop() -> None:
    with contextlib.suppress(*DB_ERRORS):
        connection.close()
