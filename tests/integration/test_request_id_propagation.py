"""Issue 5: the X-Request-ID of the POST that started a saga travels with it — sent on
every participant call (retries included) and carried by the saga's SAGA log lines."""

import logging

import pytest

from sagas.models import SagaInstance
from tests.participants import Reply
from tests.saga_builders import attempts, call, drive, step

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def traced(participants, internal_api):
    """A 3-step definition on the participant server; the second step fails once."""
    url = participants.url
    participants.script("POST", "/charge", Reply(503, {"error": "busy"}), Reply(200, {}))
    steps = [
        step("reserve", call(url("/reserve"))),
        step("charge", call(url("/charge")), retry={"max_attempts": 2}),
        step("ship", call(url("/ship"))),
    ]
    body = {"name": "traced", "steps": steps}
    response = internal_api.post("/api/saga-definitions/", body, format="json")
    assert response.status_code == 201, response.json()


def run_started_saga(client_api, worker, caplog, **headers):
    body = {"definition": "traced", "input": {}}
    with caplog.at_level(logging.INFO):
        response = client_api.post("/api/sagas/", body, format="json", **headers)
        assert response.status_code == 202
        saga = SagaInstance.objects.get(id=response.json()["id"])
        drive(worker, saga)
    saga.refresh_from_db()
    assert saga.status == "completed"
    assert len(attempts(saga)) == 4  # reserve, charge twice, ship
    return response, saga


def saga_lines(caplog, saga) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.getMessage().startswith("SAGA") and getattr(r, "saga_id", None) == str(saga.id)
    ]


def test_the_client_request_id_reaches_every_call_and_saga_log_line(
    traced, participants, client_api, worker, caplog
):
    response, saga = run_started_saga(client_api, worker, caplog, HTTP_X_REQUEST_ID="trace-123")

    assert response["X-Request-ID"] == "trace-123"
    assert saga.request_id == "trace-123"
    received = participants.received()
    assert [r.path for r in received] == ["/reserve", "/charge", "/charge", "/ship"]
    assert {r.header("X-Request-ID") for r in received} == {"trace-123"}
    lines = saga_lines(caplog, saga)
    # The API's start line, then the worker's: started, 4 calls, finished.
    assert [r.name for r in lines] == ["sagas.api"] + ["sagas.engine"] * 6
    assert {r.request_id for r in lines} == {"trace-123"}


def test_without_a_client_id_the_generated_one_is_used_throughout(
    traced, participants, client_api, worker, caplog
):
    response, saga = run_started_saga(client_api, worker, caplog)

    generated = response["X-Request-ID"]
    assert len(generated) == 32
    assert saga.request_id == generated
    assert {r.header("X-Request-ID") for r in participants.received()} == {generated}
    lines = saga_lines(caplog, saga)
    assert len(lines) == 7
    assert {r.request_id for r in lines} == {generated}


def test_a_replayed_start_keeps_the_first_request_id(traced, client_api):
    body = {"definition": "traced", "input": {}}
    first = client_api.post(
        "/api/sagas/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1", HTTP_X_REQUEST_ID="one"
    )
    again = client_api.post(
        "/api/sagas/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1", HTTP_X_REQUEST_ID="two"
    )

    assert (first.status_code, again.status_code) == (202, 200)
    assert again["X-Request-ID"] == "two"  # the response is the replaying request's
    assert SagaInstance.objects.get(id=first.json()["id"]).request_id == "one"
