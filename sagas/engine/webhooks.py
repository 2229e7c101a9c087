"""Lifecycle webhooks as pure functions (DESIGN §9.5): no database, no clock, no network.

    webhook_event(event, saga, notify) -> body | None   a history event as a webhook event
    webhook_events(events, saga, notify) -> [body]       the same, for one write's events
    signature_header(secret, timestamp, raw) -> str      X-Saga-Signature: t=…,v1=…
    delivery_delay(attempts, base) -> seconds            the wait after a failed delivery

Webhook events are derived from the saga's history events (the store writes both in the
same statement or transaction): `started` → saga.started, `step_succeeded` →
step.succeeded, `step_failed` → step.failed, `paused` → saga.paused, `finished` →
saga.<its status>. The others (resumed, cancel_requested, compensating, retried) have no
webhook type.
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

EVENT_TYPES = (
    "saga.started",
    "saga.completed",
    "saga.compensated",
    "saga.cancelled",
    "saga.failed",
    "saga.paused",
    "step.succeeded",
    "step.failed",
)
# Saga events carry the saga's `error` (null when it completed).
SAGA_ERROR_TYPES = frozenset(EVENT_TYPES[1:6])
HISTORY_TYPES = {
    "started": "saga.started",
    "step_succeeded": "step.succeeded",
    "step_failed": "step.failed",
    "paused": "saga.paused",
}
# The longest wait between two deliveries of one event.
MAX_DELAY_SECONDS = 3600.0


@dataclass(frozen=True)
class Notify:
    """A definition's `notify`: where to POST, and which event types."""

    url: str
    events: frozenset[str]

    @classmethod
    def of(cls, notify: dict | None) -> "Notify | None":
        """From the normalised definition's value (None: no webhooks)."""
        if not notify:
            return None
        return cls(notify["url"], frozenset(notify.get("events") or EVENT_TYPES))


@dataclass(frozen=True)
class SagaFacts:
    """What a webhook body says of its saga, as the change that caused it left it."""

    saga_id: str
    definition: str
    definition_version: int | None
    status: str
    error: dict | None = None


def event_type(event: dict) -> str | None:
    """The webhook type of a history event, None when it has none."""
    if event["event"] == "finished":
        status = (event.get("details") or {}).get("status")
        return f"saga.{status}" if status else None
    return HISTORY_TYPES.get(event["event"])


def webhook_event(event: dict, saga: SagaFacts, notify: Notify | None) -> dict | None:
    """The body of the webhook a history event causes, or None (no notify, a type the
    definition did not ask for, or an event without a type). `id` is left to the store."""
    kind = event_type(event)
    if notify is None or kind is None or kind not in notify.events:
        return None
    return {
        "type": kind,
        "saga_id": saga.saga_id,
        "definition": saga.definition,
        "definition_version": saga.definition_version,
        "status": str(saga.status),
        "at": _iso(event["at"]),
        "data": _data(kind, event, saga),
    }


def webhook_events(events: list[dict], saga: SagaFacts, notify: Notify | None) -> list[dict]:
    if notify is None:
        return []
    bodies = (webhook_event(event, saga, notify) for event in events)
    return [body for body in bodies if body is not None]


def _data(kind: str, event: dict, saga: SagaFacts) -> dict:
    data = {}
    if event.get("step"):
        data["step"] = event["step"]
    details = dict(event.get("details") or {})
    details.pop("status", None)  # the body's own `status`
    data |= details
    if kind in SAGA_ERROR_TYPES:
        data["error"] = saga.error
    if event.get("actor", "system") != "system":
        data["actor"] = event["actor"]
        if event.get("reason"):
            data["reason"] = event["reason"]
    return data


def _iso(at) -> str:
    if isinstance(at, datetime):
        return at.isoformat().replace("+00:00", "Z")
    return str(at)


def signature(secret: str, timestamp: int, raw: bytes) -> str:
    """Hex HMAC-SHA256 of "<timestamp>.<raw body>" with `secret`."""
    message = str(timestamp).encode() + b"." + raw
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, raw: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, raw)}"


def delivery_delay(attempts: int, base: float) -> float:
    """Seconds before the next delivery after `attempts` failed ones: `base`, doubling,
    at most an hour."""
    doublings = min(max(attempts - 1, 0), 32)  # past 2**32 the cap has long been reached
    return min(base * 2**doublings, MAX_DELAY_SECONDS)
