"""The pure side of webhooks: history events → webhook bodies, the signature, the delays."""

import hashlib
import hmac
from datetime import UTC, datetime

from sagas.engine.transitions import history_event
from sagas.engine.webhooks import (
    EVENT_TYPES,
    Notify,
    SagaFacts,
    delivery_delay,
    event_type,
    signature_header,
    webhook_event,
    webhook_events,
)
from tests.webhooks import readme_verify

AT = datetime(2026, 1, 5, 10, 0, 1, 250000, tzinfo=UTC)
ALL = Notify("http://hooks.test/h", frozenset(EVENT_TYPES))
FACTS = SagaFacts("s-1", "checkout", 3, "completed")


def test_each_history_event_maps_to_its_type_or_none():
    cases = {
        "started": "saga.started",
        "step_succeeded": "step.succeeded",
        "step_failed": "step.failed",
        "paused": "saga.paused",
        "resumed": None,
        "cancel_requested": None,
        "compensating": None,
        "retried": None,
    }
    for name, expected in cases.items():
        assert event_type(history_event(name, AT)) == expected, name
    for status in ("completed", "compensated", "cancelled", "failed"):
        event = history_event("finished", AT, details={"status": status, "error": "x"})
        assert event_type(event) == f"saga.{status}"


def test_the_body_names_the_saga_and_the_change():
    event = history_event(
        "step_failed", AT, "charge", details={"phase": "action", "attempt": 2, "error": "HTTP 422"}
    )
    facts = SagaFacts("s-1", "checkout", 3, "compensating")
    assert webhook_event(event, facts, ALL) == {
        "type": "step.failed",
        "saga_id": "s-1",
        "definition": "checkout",
        "definition_version": 3,
        "status": "compensating",
        "at": "2026-01-05T10:00:01.250000Z",
        "data": {"step": "charge", "phase": "action", "attempt": 2, "error": "HTTP 422"},
    }


def test_saga_events_carry_the_error_and_who_asked():
    error = {"code": "cancelled", "step": None, "message": "Cancelled on request."}
    finished = history_event("finished", AT, details={"status": "cancelled", "error": "cancelled"})
    facts = SagaFacts("s-1", "checkout", 1, "cancelled", error)
    assert webhook_event(finished, facts, ALL)["data"] == {"error": error}
    paused = history_event("paused", AT, actor="internal", key_id="ab12cd34", reason="check")
    data = webhook_event(paused, SagaFacts("s-1", "checkout", 1, "paused"), ALL)["data"]
    assert data == {"error": None, "actor": "internal", "reason": "check"}  # never the key id


def test_only_the_asked_types_and_nothing_without_notify():
    events = [
        history_event("step_succeeded", AT, "a"),
        history_event("finished", AT, details={"status": "completed"}),
    ]
    only_end = Notify("http://hooks.test/h", frozenset({"saga.completed"}))
    assert [b["type"] for b in webhook_events(events, FACTS, only_end)] == ["saga.completed"]
    assert webhook_events(events, FACTS, None) == []
    assert Notify.of(None) is None
    assert Notify.of({"url": "http://h.test/"}).events == frozenset(EVENT_TYPES)


def test_the_signature_is_hmac_sha256_of_time_dot_body_and_the_readme_checks_it():
    raw = b'{"id":"e-1"}'
    header = signature_header("s3cret", 1767607201, raw)
    expected = hmac.new(b"s3cret", b"1767607201." + raw, hashlib.sha256).hexdigest()
    assert header == f"t=1767607201,v1={expected}"
    verify = readme_verify()
    assert not verify("s3cret", header, raw)  # valid, but 2026-01-05 is too old by now
    assert verify("s3cret", header, raw, tolerance=10**10)
    assert not verify("s3cret", header, raw + b" ", tolerance=10**10)
    for malformed in ("", "v1=abc", "t=soon,v1=abc", f"t=1767607201,v2={expected}"):
        assert not verify("s3cret", malformed, raw, tolerance=10**10), malformed


def test_delays_double_from_the_base_up_to_an_hour():
    assert [delivery_delay(n, 5.0) for n in range(1, 6)] == [5.0, 10.0, 20.0, 40.0, 80.0]
    assert delivery_delay(12, 5.0) == 3600.0
    assert delivery_delay(10**6, 5.0) == 3600.0  # no overflow for any attempt count
    assert delivery_delay(3, 0.0) == 0.0
