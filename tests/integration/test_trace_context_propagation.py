"""Issue 13 point 5: the W3C trace of the POST that started a saga travels with it — every
participant call (retries and compensations included) sends a `traceparent` with the
saga's trace id and a new parent id, and the `tracestate` as received; the saga's SAGA log
lines carry `trace_id`. Without a valid `traceparent` the saga starts a trace of its own.
On both databases."""

import logging

import pytest

from sagas.engine.trace_context import TRACEPARENT, traceparent_parse
from sagas.models import SagaInstance
from tests.participants import Reply
from tests.saga_builders import calls_made, checkout_definition, drive, saga_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT_IN = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACESTATE_IN = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"
# reserve; charge fails once, then succeeds; ship is rejected; both compensations run.
CALLS = [
    "POST /reserve",
    "POST /charge",
    "POST /charge",
    "POST /ship",
    "POST /refund",
    "DELETE /reserve/r-9",
]


@pytest.fixture
def checkout(participants):
    definition = checkout_definition(participants, retry={"max_attempts": 2})
    participants.script("POST", "/charge", Reply(503, {"error": "busy"}), Reply(201, {"id": "p"}))
    participants.script("POST", "/ship", Reply(422, {"error": "no address"}))
    return definition


def run_started_saga(client_api, worker, caplog, **headers) -> SagaInstance:
    body = {"definition": "checkout", "input": {"order_id": "A-1"}}
    with caplog.at_level(logging.INFO):
        response = client_api.post("/api/sagas/", body, format="json", **headers)
        assert response.status_code == 202, response.json()
        done = drive(worker, SagaInstance.objects.get(id=response.json()["id"]))
    assert done.status == "compensated"
    return done


def received_traces(participants) -> list[tuple[str, str, str]]:
    """(trace id, parent id, flags) of each call's traceparent, which must be valid."""
    traces = []
    for request in participants.received():
        value = request.header("traceparent")
        assert TRACEPARENT.match(value) and traceparent_parse(value) is not None, value
        traces.append(tuple(value.split("-")[1:]))
    return traces


def saga_line_trace_ids(caplog, saga) -> list[str]:
    lines = [
        r
        for r in caplog.records
        if r.getMessage().startswith("SAGA") and getattr(r, "saga_id", None) == str(saga.id)
    ]
    # The API's start line, then the worker's: started, 6 calls, compensating, compensated.
    assert len(lines) >= 8
    return [r.trace_id for r in lines]


def test_the_incoming_trace_reaches_every_call_and_saga_log_line(
    checkout, participants, client_api, worker, caplog
):
    saga = run_started_saga(
        client_api,
        worker,
        caplog,
        HTTP_TRACEPARENT=TRACEPARENT_IN,
        HTTP_TRACESTATE=TRACESTATE_IN,
    )

    assert calls_made(participants) == CALLS
    traces = received_traces(participants)
    assert {trace_id for trace_id, _, _ in traces} == {TRACE_ID}
    assert {flags for _, _, flags in traces} == {"01"}
    parents = [parent for _, parent, _ in traces]
    # Each call is a span of its own: a new parent id every time, never the client's.
    assert len(set(parents)) == len(CALLS) and PARENT_ID not in parents
    tracestates = {r.header("tracestate") for r in participants.received()}
    assert tracestates == {"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
    assert (saga.traceparent, saga.tracestate) == (TRACEPARENT_IN, next(iter(tracestates)))
    assert set(saga_line_trace_ids(caplog, saga)) == {TRACE_ID}


def test_without_a_traceparent_the_saga_starts_its_own_trace(
    checkout, participants, client_api, worker, caplog
):
    saga = run_started_saga(client_api, worker, caplog, HTTP_TRACESTATE=TRACESTATE_IN)

    traces = received_traces(participants)
    trace_ids = {trace_id for trace_id, _, _ in traces}
    assert len(trace_ids) == 1 and trace_ids != {TRACE_ID}
    assert {flags for _, _, flags in traces} == {"01"}  # sampled: the service started it
    assert len({parent for _, parent, _ in traces}) == len(CALLS)
    # A tracestate without its traceparent belongs to no trace: dropped.
    assert {r.header("tracestate") for r in participants.received()} == {None}
    assert traceparent_parse(saga.traceparent).trace_id in trace_ids
    assert set(saga_line_trace_ids(caplog, saga)) == trace_ids


@pytest.mark.parametrize(
    "invalid",
    [
        f"00-{'0' * 32}-{PARENT_ID}-01",  # trace id all zeros
        f"00-{TRACE_ID}-{'0' * 16}-01",  # parent id all zeros
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is forbidden
        f"01-{TRACE_ID}-{PARENT_ID}-01",  # only version 00 is read
        TRACEPARENT_IN.upper(),  # hex is lower case
        f"{TRACEPARENT_IN}-extra",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(
    invalid, checkout, participants, client_api, worker, caplog
):
    saga = run_started_saga(
        client_api, worker, caplog, HTTP_TRACEPARENT=invalid, HTTP_TRACESTATE=TRACESTATE_IN
    )

    trace_ids = {trace_id for trace_id, _, _ in received_traces(participants)}
    assert len(trace_ids) == 1
    assert trace_ids.isdisjoint({TRACE_ID, "0" * 32, TRACE_ID.upper()})
    assert {r.header("tracestate") for r in participants.received()} == {None}
    assert saga.tracestate == ""


def test_a_replayed_start_keeps_the_first_trace(checkout, client_api):
    body = {"definition": "checkout", "input": {"order_id": "A-1"}}
    other = f"00-{'a' * 32}-{PARENT_ID}-00"
    first = client_api.post(
        "/api/sagas/",
        body,
        format="json",
        HTTP_IDEMPOTENCY_KEY="k",
        HTTP_TRACEPARENT=TRACEPARENT_IN,
    )
    again = client_api.post(
        "/api/sagas/", body, format="json", HTTP_IDEMPOTENCY_KEY="k", HTTP_TRACEPARENT=other
    )

    assert (first.status_code, again.status_code) == (202, 200)
    assert SagaInstance.objects.get(id=first.json()["id"]).traceparent == TRACEPARENT_IN


def test_a_saga_started_before_traces_were_kept_uses_its_id(participants, worker):
    saga = saga_create(checkout_definition(participants), {"order_id": "A-1"})
    assert saga.traceparent == ""

    drive(worker, saga)

    assert {trace_id for trace_id, _, _ in received_traces(participants)} == {saga.id.hex}
