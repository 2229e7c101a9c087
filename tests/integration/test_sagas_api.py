"""POST/GET /api/sagas/, detail, logs, cancel, retry."""

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from sagas.models import SagaInstance
from tests.api_builders import attempt_row, definition, nested, post_definition, saga_row

# The start path (the store's INSERT, idempotency by its unique index) on both databases.
pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


@pytest.fixture
def checkout(internal_api):
    """The two-step `checkout` definition, version 1."""
    assert post_definition(internal_api).status_code == 201


def start(api, body=None, key=None, **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    body = body if body is not None else {"definition": "checkout", "input": {"order_id": "A-1"}}
    return api.post("/api/sagas/", body, format="json", **headers, **extra)


def test_start_returns_202_pending_with_location(checkout, client_api):
    response = start(client_api)

    assert response.status_code == 202
    saga = response.json()
    assert response["Location"] == f"/api/sagas/{saga['id']}/"
    assert saga["status"] == "pending"
    assert saga["definition"] == "checkout"
    assert saga["definition_version"] == 1
    assert saga["input"] == {"order_id": "A-1"}
    assert saga["error"] is None
    assert saga["steps"] == [
        {
            "name": name,
            "status": "pending",
            "attempts": 0,
            "compensation_attempts": 0,
            "response": None,
            "error": None,
        }
        for name in ("reserve", "charge")
    ]


def test_started_saga_is_due_now_with_its_deadline(checkout, client_api):
    before = timezone.now()
    saga_id = start(client_api).json()["id"]

    row = SagaInstance.objects.get(id=saga_id)
    assert row.status == "pending"
    assert row.current_step == 0
    assert row.phase == "action"
    assert before <= row.next_attempt_at <= timezone.now()
    expected_deadline = row.created_at + timedelta(seconds=300)
    assert abs((row.deadline_at - expected_deadline).total_seconds()) < 1
    assert row.steps[0]["status_code"] is None
    assert row.lease_token is None


def test_start_uses_the_requested_or_latest_version(checkout, internal_api, client_api):
    post_definition(internal_api, definition(description="second"))

    latest = start(client_api, {"definition": "checkout"}).json()
    first = start(client_api, {"definition": "checkout", "version": 1}).json()

    assert latest["definition_version"] == 2
    assert latest["input"] == {}
    assert first["definition_version"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"definition": "nope"}, "definition"),
        ({"definition": "checkout", "version": 7}, "version"),
        ({"definition": "checkout", "version": 0}, "version"),
        ({"definition": "checkout", "version": "1"}, "version"),
        ({"definition": "checkout", "version": True}, "version"),
        ({"definition": "checkout", "input": []}, "input"),
        ({"definition": "checkout", "input": "text"}, "input"),
        ({"definition": "checkout", "input": None}, "input"),
        ({"definition": "checkout", "input": {"a": nested(20)}}, "input"),
        ({"definition": "checkout", "input": {"a": "nul\u0000"}}, "input"),
        ({"definition": "checkout", "inputs": {}}, "inputs"),
        ({"definition": 5}, "definition"),
        ({}, "definition"),
    ],
)
def test_invalid_start_is_400_at_the_field(checkout, client_api, body, field):
    response = start(client_api, body)

    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_start_body_must_be_an_object(checkout, client_api):
    response = client_api.post("/api/sagas/", [{"definition": "checkout"}], format="json")

    assert response.status_code == 400
    assert "non_field_errors" in response.json()["errors"]


def test_same_idempotency_key_and_body_returns_200_and_the_same_saga(checkout, client_api):
    first = start(client_api, key="order-A-1")
    again = start(client_api, key="order-A-1")

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert SagaInstance.objects.count() == 1


def test_same_key_with_a_different_body_is_409(checkout, client_api):
    start(client_api, key="order-A-1")
    response = start(
        client_api, {"definition": "checkout", "input": {"order_id": "B"}}, "order-A-1"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


def test_idempotent_sameness_ignores_key_order_but_not_version(checkout, client_api):
    body = {"definition": "checkout", "input": {"a": 1, "b": {"c": 2, "d": 3}}}
    reordered = {"input": {"b": {"d": 3, "c": 2}, "a": 1}, "definition": "checkout"}
    start(client_api, body, key="k")

    assert start(client_api, reordered, key="k").status_code == 200
    assert start(client_api, {**body, "version": 1}, key="k").status_code == 409


def test_a_used_key_answers_as_a_replay_even_for_an_unknown_definition(checkout, client_api):
    # The INSERT decides whether a key is new; a body it cannot insert (no such definition
    # or version) still meets the key's first use: 409 for a different body, as before.
    start(client_api, key="order-A-1")
    unknown = {"definition": "nope", "input": {"order_id": "A-1"}}
    out_of_range = {"definition": "checkout", "version": 10**30, "input": {}}

    assert start(client_api, unknown, key="order-A-1").status_code == 409
    assert start(client_api, out_of_range, key="order-A-1").status_code == 409
    assert start(client_api, unknown, key="fresh").status_code == 400
    assert SagaInstance.objects.count() == 1


def test_idempotency_key_length_is_limited(checkout, client_api):
    assert start(client_api, key="k" * 255).status_code == 202
    too_long = start(client_api, key="k" * 256)
    assert too_long.status_code == 400
    assert "Idempotency-Key" in too_long.json()["errors"]
    assert start(client_api, key="").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_concurrent_identical_starts_give_exactly_one_202(checkout, settings):
    results: list[tuple[int, str]] = []
    barrier = threading.Barrier(8)

    def post():
        api = APIClient()
        api.credentials(HTTP_X_API_KEY=settings.SAGA_API_KEY)
        barrier.wait()
        try:
            response = start(api, key="race-1")
            results.append((response.status_code, response.json()["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 7 + [202]
    assert len({saga_id for _, saga_id in results}) == 1
    assert SagaInstance.objects.count() == 1


@override_settings(SAGA_MAX_INPUT_BYTES=1000)
def test_body_over_max_input_bytes_is_413(checkout, client_api):
    small = {"definition": "checkout", "input": {"pad": "x" * 800}}
    big = {"definition": "checkout", "input": {"pad": "x" * 1000}}

    assert start(client_api, small).status_code == 202
    response = start(client_api, big)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


@override_settings(SAGA_MAX_INPUT_BYTES=1000)
def test_declared_content_length_over_the_limit_is_413_before_reading(checkout, client_api):
    response = client_api.generic(
        "POST",
        "/api/sagas/",
        b'{"definition": "checkout"}',
        content_type="application/json",
        CONTENT_LENGTH="5000000",
    )

    assert response.status_code == 413


def test_default_max_input_is_256_kib_even_above_djangos_upload_limit(checkout, client_api):
    fits = {"definition": "checkout", "input": {"pad": "x" * (255 * 1024)}}
    over = {"definition": "checkout", "input": {"pad": "x" * (257 * 1024)}}

    assert start(client_api, fits).status_code == 202
    assert start(client_api, over).status_code == 413


def test_list_is_newest_first_and_paginated(checkout, client_api):
    ids = [start(client_api).json()["id"] for _ in range(3)]

    page1 = client_api.get("/api/sagas/?page_size=2").json()
    page2 = client_api.get(page1["next"]).json()

    assert page1["count"] == 3
    assert [s["id"] for s in page1["results"]] == ids[::-1][:2]
    assert [s["id"] for s in page2["results"]] == ids[:1]
    assert page2["previous"] is not None


def test_list_filters(checkout, internal_api, client_api):
    post_definition(internal_api, definition("other"))
    old = saga_row(status="completed", created_at=timezone.now() - timedelta(days=2))
    running = saga_row(status="running")
    other = saga_row("other")

    def ids(query):
        response = client_api.get("/api/sagas/" + query)
        assert response.status_code == 200, response.json()
        return {s["id"] for s in response.json()["results"]}

    assert ids("?status=running") == {str(running.id)}
    assert ids("?definition=other") == {str(other.id)}
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids("?created_before=" + yesterday.replace("+", "%2B")) == {str(old.id)}
    assert str(old.id) not in ids("?created_after=" + yesterday.replace("+", "%2B"))
    assert ids("?status=running&definition=other") == set()
    assert len(ids("?unknown=1&sort=weird")) == 3
    assert len(ids("?status=&definition=")) == 3  # an empty value is no filter


@pytest.mark.parametrize(
    "query",
    [
        "?status=finished",
        "?created_after=yesterday",
        "?created_before=2024-13-01",
        "?status=PENDING",
    ],
)
def test_invalid_filter_value_is_400(client_api, query):
    response = client_api.get("/api/sagas/" + query)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_detail_and_unknown_ids(checkout, client_api):
    saga_id = start(client_api).json()["id"]

    assert client_api.get(f"/api/sagas/{saga_id}/").json()["id"] == saga_id
    missing = client_api.get(f"/api/sagas/{uuid.uuid4()}/")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    not_uuid = client_api.get("/api/sagas/not-a-uuid/")
    assert not_uuid.status_code == 404
    assert not_uuid["Content-Type"] == "application/json"


def test_one_saga_reads_the_same_as_in_the_list(checkout, client_api):
    # A single saga is rendered by one shared serializer instance, a list by DRF's
    # ListSerializer: both must show a saga identically, whatever its state.
    finished = timezone.now()
    error = {"code": "step_failed", "step": "reserve", "message": "HTTP 422: no"}
    saga_row(
        status="compensated",
        started_at=finished - timedelta(seconds=1),
        finished_at=finished,
        error=error,
    )
    start(client_api)

    listed = client_api.get("/api/sagas/").json()["results"]
    for item in listed:
        assert client_api.get(f"/api/sagas/{item['id']}/").json() == item
    assert {item["status"] for item in listed} == {"compensated", "pending"}
    assert [item["error"] for item in listed if item["status"] == "compensated"] == [error]


def test_logs_are_every_attempt_in_order(checkout, client_api):
    saga = saga_row()
    attempt_row(saga, "reserve", 1, status_code=503, outcome="retryable_error", error="HTTP 503")
    attempt_row(saga, "reserve", 2)
    attempt_row(saga, "charge", 1, status_code=422, outcome="permanent_error", error="declined")
    attempt_row(saga, "reserve", 1, phase="compensation", method="DELETE")

    response = client_api.get(f"/api/sagas/{saga.id}/logs/")

    assert response.status_code == 200
    logs = response.json()
    assert [(e["step"], e["phase"], e["attempt"]) for e in logs] == [
        ("reserve", "action", 1),
        ("reserve", "action", 2),
        ("charge", "action", 1),
        ("reserve", "compensation", 1),
    ]
    assert set(logs[0]) == {
        "step", "phase", "run", "attempt", "method", "url", "status_code", "outcome", "error",
        "started_at", "duration_ms", "request_headers", "request_body", "response_body",
        "truncated",
    }  # fmt: skip
    assert logs[0]["outcome"] == "retryable_error"
    assert logs[0]["status_code"] == 503
    assert {e["run"] for e in logs} == {1}
    assert client_api.get(f"/api/sagas/{uuid.uuid4()}/logs/").status_code == 404


def test_cancel_pending_saga_cancels_it_at_once_then_409(checkout, client_api):
    saga_id = start(client_api).json()["id"]

    response = client_api.post(f"/api/sagas/{saga_id}/cancel/")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["error"]["code"] == "cancelled"
    assert {step["status"] for step in body["steps"]} == {"skipped"}
    again = client_api.post(f"/api/sagas/{saga_id}/cancel/")
    assert again.status_code == 409
    assert again.json()["code"] == "conflict"


def test_cancel_running_saga_requests_cancellation(checkout, client_api):
    saga = saga_row(
        status="running",
        lease_token=uuid.uuid4(),
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )

    response = client_api.post(f"/api/sagas/{saga.id}/cancel/")

    assert response.status_code == 202
    assert response.json()["status"] == "running"
    assert response.json()["cancel_requested"] is True


def test_cancel_unknown_or_non_uuid_is_404(client_api):
    assert client_api.post(f"/api/sagas/{uuid.uuid4()}/cancel/").status_code == 404
    assert client_api.post("/api/sagas/123/cancel/").status_code == 404


def test_retry_failed_saga_resumes_compensation(checkout, internal_api):
    steps = [
        {"name": "reserve", "status": "compensation_failed", "attempts": 1,
         "compensation_attempts": 10, "response": {"id": 1}, "status_code": 200,
         "error": "HTTP 500"},
        {"name": "charge", "status": "failed", "attempts": 1, "compensation_attempts": 0,
         "response": None, "status_code": 422, "error": "HTTP 422"},
    ]  # fmt: skip
    saga = saga_row(
        status="failed",
        steps=steps,
        current_step=0,
        phase="compensation",
        finished_at=timezone.now(),
        next_attempt_at=None,
    )

    response = internal_api.post(f"/api/sagas/{saga.id}/retry/")

    assert response.status_code == 202
    assert response.json()["status"] == "compensating"
    saga.refresh_from_db()
    assert saga.next_attempt_at is not None
    assert saga.steps[0]["retry_base"] == 10


def test_retry_of_a_saga_that_has_not_failed_is_409(checkout, internal_api):
    saga = saga_row()

    response = internal_api.post(f"/api/sagas/{saga.id}/retry/")

    assert response.status_code == 409


def test_retry_needs_the_internal_key(checkout, client_api):
    saga = saga_row(status="failed")

    assert client_api.post(f"/api/sagas/{saga.id}/retry/").status_code == 403
    assert APIClient().post(f"/api/sagas/{saga.id}/retry/").status_code == 401
