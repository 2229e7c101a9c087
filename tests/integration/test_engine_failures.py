"""Failures: rejections, retries, uncertain outcomes, compensation, deadline, cancel."""

import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from sagas.engine import control
from tests.participants import Held, Reply
from tests.saga_builders import (
    attempts,
    call,
    definition_create,
    drive,
    in_thread,
    saga_create,
    saga_get,
    step,
)
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def checkout(participants, *, retry=None, comp_retry=None, timeout=None, timeout_seconds=60.0):
    """reserve → charge → ship, each with a compensation, on the scripted server."""
    url = participants.url
    participants.script("POST", "/reserve", Reply(201, {"id": "r-9"}))
    return definition_create(
        [
            step(
                "reserve",
                call(url("/reserve")),
                call(url("/reserve/${steps.reserve.response.id}"), method="DELETE"),
                retry=comp_retry,
            ),
            step(
                "charge",
                call(url("/charge"), timeout=timeout),
                call(url("/refund"), body={"payment": "${steps.charge.response.id}"}),
                retry=retry,
            ),
            step("ship", call(url("/ship")), call(url("/unship")), retry=retry),
        ],
        timeout_seconds=timeout_seconds,
    )


def keys(received):
    return {r.header("Idempotency-Key") for r in received}


def test_business_rejection_is_not_retried_and_earlier_steps_compensate(participants, worker):
    participants.script("POST", "/reserve", Reply(201, {"id": "r-9"}))
    participants.script("POST", "/charge", Reply(422, {"error": "card declined"}))
    saga = saga_create(checkout(participants))

    done = drive(worker, saga)

    assert done.status == "compensated"
    assert done.error == {
        "code": "step_failed",
        "step": "charge",
        "message": "HTTP 422: card declined",
    }
    assert [s["status"] for s in done.steps] == ["compensated", "failed", "skipped"]
    assert done.steps[1]["attempts"] == 1 and done.steps[1]["error"] == "HTTP 422: card declined"
    assert len(participants.received("POST", "/charge")) == 1  # no retry of a 4xx
    assert participants.received("POST", "/refund") == []  # the rejected step did not happen
    assert participants.received("POST", "/ship") == []
    undo = participants.received("DELETE", "/reserve/r-9")
    assert len(undo) == 1 and undo[0].header("Idempotency-Key") == f"{saga.id}:reserve:compensation"
    assert [(a.step, a.phase, a.outcome) for a in attempts(saga)] == [
        ("reserve", "action", "succeeded"),
        ("charge", "action", "permanent_error"),
        ("reserve", "compensation", "succeeded"),
    ]


def test_compensations_run_in_strict_reverse_order(participants, worker):
    url = participants.url
    names = ["a", "b", "c", "d"]
    definition = definition_create(
        [step(n, call(url(f"/{n}")), call(url(f"/undo-{n}"))) for n in names]
    )
    participants.script("POST", "/d", Reply(409, {"message": "conflict"}))
    saga = saga_create(definition)

    done = drive(worker, saga)

    undone = [r.path for r in participants.received() if r.path.startswith("/undo")]
    assert undone == ["/undo-c", "/undo-b", "/undo-a"]
    assert done.error["message"] == "HTTP 409: conflict"


def test_transient_errors_are_retried_with_the_same_key(participants, worker):
    participants.script(
        "POST",
        "/charge",
        Reply(503, {"error": "busy"}),
        Reply(500),
        Reply(200, {"id": "p-1"}),
    )
    saga = saga_create(checkout(participants))

    done = drive(worker, saga)

    assert done.status == "completed"
    assert done.steps[1]["attempts"] == 3
    charges = participants.received("POST", "/charge")
    assert len(charges) == 3
    assert keys(charges) == {f"{saga.id}:charge:action"}
    # The request id of the saga's start (an ORM-made saga has none: its own id instead).
    assert {r.header("X-Request-ID") for r in charges} == {saga.id.hex}
    logged = [(a.attempt, a.outcome, a.status_code) for a in attempts(saga) if a.step == "charge"]
    assert logged == [
        (1, "retryable_error", 503),
        (2, "retryable_error", 500),
        (3, "succeeded", 200),
    ]


@pytest.mark.parametrize("status", [408, 425, 429])
def test_other_retryable_statuses(participants, worker, status):
    participants.script("POST", "/charge", Reply(status), Reply(200, {"id": "p"}))
    done = drive(worker, saga_create(checkout(participants)))
    assert done.status == "completed" and done.steps[1]["attempts"] == 2


def test_retry_after_is_honoured_and_no_worker_sleeps_through_it(participants, worker):
    participants.script(
        "POST", "/charge", Reply(429, headers={"Retry-After": "1"}), Reply(200, {"id": "p"})
    )
    saga = saga_create(checkout(participants))

    started = time.monotonic()
    while not participants.received("POST", "/charge"):
        worker.tick()
    assert time.monotonic() - started < 0.9  # the tick returned instead of sleeping
    waiting = saga_get(saga)
    assert waiting.lease_token is None  # released while it waits
    assert waiting.next_attempt_at >= timezone.now() + timedelta(seconds=0.5)
    done = drive(worker, saga)

    first, second = participants.received("POST", "/charge")
    assert second.at - first.at >= 1.0
    assert done.status == "completed"


def test_exhausted_uncertain_step_is_compensated_too(participants, worker):
    definition = checkout(participants)
    participants.script("POST", "/reserve", Reply(201, {"id": "r-1"}))
    participants.script("POST", "/charge", Reply(503, "down"))
    saga = saga_create(definition)

    done = drive(worker, saga)

    assert done.status == "compensated"
    assert done.error == {"code": "step_failed", "step": "charge", "message": "HTTP 503: down"}
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "skipped"]
    assert len(participants.received("POST", "/charge")) == 3
    refund = participants.received("POST", "/refund")
    # Its response never came: the placeholder resolves to null instead of failing.
    assert len(refund) == 1 and refund[0].body == {"payment": None}
    order = [r.path for r in participants.received() if r.path in ("/refund", "/reserve/r-1")]
    assert order == ["/refund", "/reserve/r-1"]


def test_exhausted_429_did_not_happen_and_is_not_compensated(participants, worker):
    participants.script("POST", "/reserve", Reply(201, {"id": "r-1"}))
    participants.script("POST", "/charge", Reply(429))
    done = drive(worker, saga_create(checkout(participants)))
    assert [s["status"] for s in done.steps] == ["compensated", "failed", "skipped"]
    assert participants.received("POST", "/refund") == []


def test_step_timeout_is_retryable_uncertain_and_a_step_failure(participants, worker):
    participants.script("POST", "/charge", Reply(200, {"id": "late"}, delay=0.6))
    saga = saga_create(checkout(participants, timeout=0.2, retry={"max_attempts": 2}))

    done = drive(worker, saga)

    assert done.status == "compensated"
    assert done.error["code"] == "step_failed"
    assert done.error["message"] == "timed out after 0.2 s"
    assert done.steps[1]["status"] == "compensated"  # may have taken effect
    charges = [a for a in attempts(saga) if a.step == "charge" and a.phase == "action"]
    assert [a.outcome for a in charges] == ["retryable_error"] * 2
    assert all(a.duration_ms < 500 and a.status_code is None for a in charges)


def test_compensation_is_retried_with_the_same_key(participants, worker):
    participants.script("POST", "/charge", Reply(422))
    participants.script("DELETE", "/reserve/*", Reply(500), Reply(204))
    saga = saga_create(checkout(participants))

    done = drive(worker, saga)

    assert done.status == "compensated"
    assert done.steps[0]["compensation_attempts"] == 2
    undo = participants.received("DELETE", "/reserve/*")
    assert len(undo) == 2 and keys(undo) == {f"{saga.id}:reserve:compensation"}


@override_settings(SAGA_COMPENSATION_RETRY_ATTEMPTS=2)
def test_compensation_exhausted_fails_then_retry_resumes(participants, worker):
    participants.script("POST", "/charge", Reply(200, {"id": "p-1"}))
    participants.script("POST", "/ship", Reply(400, {"detail": "bad address"}))
    participants.script("POST", "/refund", Reply(500), Reply(502, {"error": "gateway"}), Reply(200))
    saga = saga_create(checkout(participants))

    failed = drive(worker, saga)

    assert failed.status == "failed"
    assert failed.error == {
        "code": "compensation_failed",
        "step": "charge",
        "message": "HTTP 502: gateway",
    }
    assert [s["status"] for s in failed.steps] == ["succeeded", "compensation_failed", "failed"]
    assert participants.received("DELETE", "/reserve/*") == []  # earlier ones wait
    assert failed.next_attempt_at is None

    control.saga_retry(saga_id=saga.id)
    done = drive(worker, saga)

    assert done.status == "compensated"
    assert done.error == {"code": "step_failed", "step": "ship", "message": "HTTP 400: bad address"}
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "failed"]
    refunds = participants.received("POST", "/refund")
    assert len(refunds) == 3 and keys(refunds) == {f"{saga.id}:charge:compensation"}
    assert done.steps[1]["compensation_attempts"] == 3
    assert len(participants.received("DELETE", "/reserve/*")) == 1


def test_deadline_compensates_with_timeout_and_starts_no_action(participants, worker):
    participants.script("POST", "/charge", Reply(503))
    definition = checkout(
        participants,
        retry={"max_attempts": 10, "delay_seconds": 30, "max_delay_seconds": 60},
        timeout_seconds=0.5,
    )
    saga = saga_create(definition)

    done = drive(worker, saga)

    assert done.status == "compensated"
    assert done.error["code"] == "timeout"
    assert len(participants.received("POST", "/charge")) == 1  # the retry was not started
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "skipped"]
    actions = [r for r in participants.received() if r.path in ("/reserve", "/charge", "/ship")]
    assert len(actions) == 2


def test_saga_past_its_deadline_calls_nothing(participants, worker):
    saga = saga_create(checkout(participants), deadline_at=timezone.now() - timedelta(seconds=1))
    done = drive(worker, saga)
    assert done.status == "compensated" and done.error["code"] == "timeout"
    assert participants.received() == []
    assert [s["status"] for s in done.steps] == ["skipped"] * 3


def test_cancel_while_a_call_is_in_flight(participants, worker):
    charge = Held(Reply(200, {"id": "p-1"}))
    participants.script("POST", "/charge", charge)
    saga = saga_create(checkout(participants))
    runner = in_thread(drive, worker, saga)
    wait_until(lambda: participants.received("POST", "/charge"))

    control.saga_cancel(saga_id=saga.id)
    charge.release()
    runner.join()

    done = saga_get(saga)
    assert done.status == "cancelled"
    assert done.error["code"] == "cancelled"
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "skipped"]
    assert participants.received("POST", "/ship") == []
    assert participants.received("POST", "/refund")[0].body == {"payment": "p-1"}
