"""Every attempt in full (DESIGN §9.6): `/logs/` shows the headers sent (credentials as
"***"), the request and response bodies (JSON or text, cut at SAGA_LOG_BODY_BYTES) and
whether a body was cut; the call in flight shows its request."""

import json

import pytest
from django.conf import settings
from django.test import override_settings

from sagas.models import SagaAttempt, SagaInstance
from tests.participants import Held, Reply
from tests.saga_builders import call, definition_create, drive, in_thread, saga_create, step
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]

ORDER = {"order_id": "A-1", "items": [{"sku": "book-1", "qty": 2}]}


def one_step(participants, reply, *, body=ORDER, headers=None):
    participants.script("POST", "/reserve", reply)
    action = call(participants.url("/reserve"), body=body, headers=headers)
    return definition_create([step("reserve", action)])


def logs(client_api, saga) -> list[dict]:
    response = client_api.get(f"/api/sagas/{saga.id}/logs/")
    assert response.status_code == 200
    return response.json()


@override_settings(SAGA_REDACT_HEADERS=["X-Signature", " x-other "])
def test_the_headers_sent_are_logged_with_credentials_redacted(participants, worker, client_api):
    headers = {
        "Authorization": "Bearer s3cret",
        "cookie": "sid=42",
        "X-API-Key": "participant-key",
        "x-signature": "sig-1",
        "X-Tenant": "acme",
    }
    definition = one_step(participants, Reply(200, {"id": "r-1"}), headers=headers)
    saga = saga_create(definition)

    drive(worker, saga)

    [entry] = logs(client_api, saga)
    sent = participants.received("POST", "/reserve")[0]
    logged = entry["request_headers"]
    # (X-Saga-Callback-Token is the service's own name: a definition cannot set it; see
    # tests/unit/test_call_log.py.)
    for name in ("Authorization", "cookie", "X-API-Key", "x-signature"):
        assert logged[name] == "***"
        assert sent.header(name) == headers[name]  # redacted in the log only
    assert logged["X-Tenant"] == "acme"
    for name in ("Content-Type", "Idempotency-Key", "X-Saga-Id", "X-Request-ID", "traceparent"):
        assert logged[name] == sent.header(name)
    assert logged["Idempotency-Key"] == f"{saga.id}:reserve:action"


def test_bodies_are_kept_as_json_or_text(participants, worker, client_api):
    participants.script("POST", "/ship", Reply(200, "shipped: 1 parcel"))
    definition = definition_create(
        [
            step("reserve", call(participants.url("/reserve"), body=ORDER)),
            step("ship", call(participants.url("/ship"), body="to door")),
        ]
    )
    participants.script("POST", "/reserve", Reply(201, {"id": "r-1", "note": "é"}))
    saga = saga_create(definition)

    drive(worker, saga)

    reserve, ship = logs(client_api, saga)
    assert reserve["request_body"] == ORDER
    assert reserve["response_body"] == {"id": "r-1", "note": "é"}
    assert ship["request_body"] == "to door"
    assert ship["response_body"] == "shipped: 1 parcel"
    assert reserve["truncated"] is False and ship["truncated"] is False


@override_settings(SAGA_LOG_BODY_BYTES=16)
def test_a_body_longer_than_the_limit_is_cut_to_text(participants, worker, client_api):
    definition = one_step(participants, Reply(422, "x" * 100))
    saga = saga_create(definition)

    drive(worker, saga)

    [entry] = logs(client_api, saga)
    received = participants.received("POST", "/reserve")[0].body
    assert entry["request_body"] == json.dumps(received, separators=(",", ":"))[:16]
    assert entry["response_body"] == "x" * 16
    assert entry["truncated"] is True
    assert entry["error"].startswith("HTTP 422: xxxx")  # the error keeps its own text


@override_settings(SAGA_LOG_BODY_BYTES=16)
def test_bodies_within_the_limit_are_not_truncated(participants, worker, client_api):
    definition = one_step(participants, Reply(200, {"id": 7}), body={"n": 1})
    saga = saga_create(definition)

    drive(worker, saga)

    [entry] = logs(client_api, saga)
    assert entry["request_body"] == {"n": 1}
    assert entry["response_body"] == {"id": 7}
    assert entry["truncated"] is False


@override_settings(SAGA_LOG_BODY_BYTES=0)
def test_a_zero_limit_keeps_no_body(participants, worker, client_api):
    definition = one_step(participants, Reply(200, {"id": "r-1"}))
    saga = saga_create(definition)

    done = drive(worker, saga)

    [entry] = logs(client_api, saga)
    assert entry["request_body"] is None and entry["response_body"] is None
    assert entry["truncated"] is True
    assert entry["request_headers"]["X-Saga-Step"] == "reserve"
    assert done.steps[0]["response"] == {"id": "r-1"}  # the saga itself keeps it


def test_the_call_in_flight_shows_its_request_and_no_response(participants, worker, client_api):
    reply = Held(Reply(200, {"id": "r-1"}))
    definition = one_step(participants, reply, headers={"Authorization": "Bearer s3cret"})
    saga = saga_create(definition)
    runner = in_thread(drive, worker, saga)
    wait_until(lambda: participants.received("POST", "/reserve"))

    [in_flight] = logs(client_api, saga)
    reply.release()
    runner.join(timeout=10)

    assert in_flight["outcome"] is None and in_flight["response_body"] is None
    assert in_flight["request_body"] == ORDER
    assert in_flight["request_headers"]["Authorization"] == "***"
    assert in_flight["truncated"] is False
    [ended] = logs(client_api, saga)
    assert ended["outcome"] == "succeeded"
    assert ended["response_body"] == {"id": "r-1"}
    assert ended["request_headers"] == in_flight["request_headers"]


def test_no_service_key_appears_anywhere_in_the_logs(participants, worker, client_api):
    # A definition that forwards the service's own keys to a participant (a mistake).
    headers = {
        "X-API-Key": settings.SAGA_API_KEY,
        "Authorization": f"Bearer {settings.INTERNAL_API_KEY}",
    }
    reply = Held(Reply(503, {"detail": "busy"}))
    definition = one_step(participants, reply, headers=headers)
    saga = saga_create(definition)
    runner = in_thread(drive, worker, saga)
    wait_until(lambda: participants.received("POST", "/reserve"))

    in_flight = client_api.get(f"/api/sagas/{saga.id}/logs/").content.decode()
    steps_in_flight = json.dumps(SagaInstance.objects.get(id=saga.id).steps)
    reply.release()
    runner.join(timeout=10)

    ended = client_api.get(f"/api/sagas/{saga.id}/logs/").content.decode()
    rows = json.dumps(list(SagaAttempt.objects.filter(saga_id=saga.id).values()), default=str)
    assert "***" in ended and '"outcome":"retryable_error"' in ended.replace(" ", "")
    for text in (in_flight, steps_in_flight, ended, rows):
        assert settings.SAGA_API_KEY not in text
        assert settings.INTERNAL_API_KEY not in text
