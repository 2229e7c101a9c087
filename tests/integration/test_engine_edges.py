"""Edge semantics (DESIGN §6a, §9.1): uncertain is sticky, a cancel keeps its promise,
a lost worker's call is not an attempt."""

import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from sagas.engine.locks import SagaLocks
from sagas.engine.worker import Worker
from sagas.models import SagaInstance
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


def checkout(participants, *, charge_timeout=None, retry=None):
    """reserve → charge → ship; reserve is released, charge refunded, ship unshipped."""
    url = participants.url
    participants.script("POST", "/reserve", Reply(201, {"id": "r-9"}))
    return definition_create(
        [
            step("reserve", call(url("/reserve")), call(url("/release"))),
            step(
                "charge",
                call(url("/charge"), timeout=charge_timeout),
                call(url("/refund")),
                retry=retry,
            ),
            step("ship", call(url("/ship")), call(url("/unship")), retry=retry),
        ]
    )


def paths(participants):
    return [r.path for r in participants.received()]


def cancel(client_api, saga):
    return client_api.post(f"/api/sagas/{saga.id}/cancel/")


# 1. Uncertain is sticky ---------------------------------------------------------------


@pytest.mark.parametrize(
    "first, second",
    [
        (Reply(200, {"id": "p-1"}, delay=3), Reply(409, {"detail": "in progress"})),
        (Reply(503, {"detail": "busy"}), Reply(422, {"detail": "declined"})),
    ],
    ids=["timeout-then-409", "503-then-422"],
)
def test_a_step_that_may_have_happened_is_compensated_after_a_later_rejection(
    participants, worker, first, second
):
    participants.script("POST", "/charge", first, second)
    definition = checkout(participants, charge_timeout=1, retry={"max_attempts": 2})
    saga = saga_create(definition)

    done = drive(worker, saga, timeout=15)

    assert paths(participants) == ["/reserve", "/charge", "/charge", "/refund", "/release"]
    assert done.status == "compensated"
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "skipped"]
    assert done.steps[1]["attempts"] == 2
    assert done.error["code"] == "step_failed" and done.error["step"] == "charge"


def test_a_step_whose_attempts_all_certainly_failed_is_not_compensated(participants, worker):
    participants.script("POST", "/charge", Reply(429), Reply(409, {"detail": "in progress"}))
    saga = saga_create(checkout(participants, retry={"max_attempts": 2}))

    done = drive(worker, saga)

    assert paths(participants) == ["/reserve", "/charge", "/charge", "/release"]
    assert [s["status"] for s in done.steps] == ["compensated", "failed", "skipped"]


# 2-4. Cancel ----------------------------------------------------------------------------


def test_cancel_during_the_last_action_compensates_it(participants, worker, client_api):
    ship = Held(Reply(200, {"id": "s-1"}))
    participants.script("POST", "/ship", ship)
    saga = saga_create(checkout(participants))
    runner = in_thread(drive, worker, saga)
    wait_until(lambda: participants.received("POST", "/ship"))

    assert cancel(client_api, saga).status_code == 202
    ship.release()
    runner.join(timeout=10)

    done = saga_get(saga)
    assert done.status == "cancelled"
    assert done.error["code"] == "cancelled"
    assert [s["status"] for s in done.steps] == ["compensated"] * 3
    assert paths(participants)[3:] == ["/unship", "/refund", "/release"]


def test_cancel_answers_409_with_the_status_once_compensating_terminal_or_requested(
    participants, client_api
):
    definition = checkout(participants)
    cases = [
        ({"status": "compensating"}, "compensating"),
        ({"status": "completed"}, "completed"),
        ({"status": "compensated"}, "compensated"),
        ({"status": "failed"}, "failed"),
        ({"status": "running", "cancel_requested": True}, "running"),
    ]
    for fields, current in cases:
        saga = saga_create(definition, **fields)
        response = cancel(client_api, saga)
        assert response.status_code == 409, fields
        body = response.json()
        assert body["code"] == "conflict" and body["status"] == current and body["detail"]
        assert saga_get(saga).status == current


def test_cancel_of_a_running_saga_is_accepted_once(participants, client_api):
    held = timezone.now() + timedelta(seconds=30)
    saga = saga_create(
        checkout(participants), status="running", lease_token=uuid.uuid4(), lease_expires_at=held
    )

    assert cancel(client_api, saga).status_code == 202
    again = cancel(client_api, saga)

    assert again.status_code == 409 and again.json()["status"] == "running"


def test_cancel_during_a_call_that_fails_retryably_skips_the_retry_wait(
    participants, worker, client_api
):
    charge = Held(Reply(503, {"detail": "busy"}))
    participants.script("POST", "/charge", charge)
    retry = {"max_attempts": 3, "delay_seconds": 600, "max_delay_seconds": 600}
    saga = saga_create(checkout(participants, retry=retry))
    runner = in_thread(drive, worker, saga)
    wait_until(lambda: participants.received("POST", "/charge"))

    assert cancel(client_api, saga).status_code == 202
    charge.release()
    runner.join(timeout=5)

    done = saga_get(saga)
    assert done.status == "cancelled"
    assert paths(participants) == ["/reserve", "/charge", "/refund", "/release"]


def test_cancel_while_a_saga_waits_for_a_retry_wakes_it(participants, worker, client_api):
    participants.script("POST", "/charge", Reply(503, {"detail": "busy"}))
    retry = {"max_attempts": 3, "delay_seconds": 600, "max_delay_seconds": 600}
    saga = saga_create(checkout(participants, retry=retry))
    wait_until(lambda: worker.tick() and participants.received("POST", "/charge"))
    waiting = saga_get(saga)
    assert waiting.lease_token is None and waiting.status == "running"
    assert waiting.next_attempt_at > timezone.now() + timedelta(seconds=30)

    assert cancel(client_api, saga).status_code == 202
    done = drive(worker, saga, timeout=5)

    assert done.status == "cancelled"
    assert paths(participants) == ["/reserve", "/charge", "/refund", "/release"]


def test_a_last_action_that_succeeds_after_the_deadline_is_compensated(participants, worker):
    participants.script("POST", "/ship", Reply(200, {"id": "s-1"}, delay=0.6))
    definition = checkout(participants)
    saga = saga_create(definition, deadline_at=timezone.now() + timedelta(seconds=0.4))

    done = drive(worker, saga)

    assert done.status == "compensated" and done.error["code"] == "timeout"
    assert paths(participants)[3:] == ["/unship", "/refund", "/release"]


# 5. A crash is not an attempt -------------------------------------------------------------


def database_fenced_worker() -> Worker:
    worker = Worker()
    worker.locks = SagaLocks(None, 30)  # no Redis lock: a stale holder cannot block the next
    return worker


def lose_the_worker(saga) -> None:
    """What the death of the worker holding `saga` looks like: its lease runs out."""
    past = timezone.now() - timedelta(seconds=1)
    SagaInstance.objects.filter(id=saga.id).update(lease_expires_at=past, next_attempt_at=past)


@override_settings(SAGA_MAX_INTERRUPTIONS=1)
def test_an_interruption_past_the_limit_counts_as_an_uncertain_failed_attempt(participants):
    url = participants.url
    definition = definition_create(
        [
            step("one", call(url("/one")), call(url("/undo-one")), retry={"max_attempts": 1}),
            step("two", call(url("/two")), call(url("/undo-two"))),
        ]
    )
    participants.script("POST", "/one", Reply(200, {}, delay=1.0))
    saga = saga_create(definition)
    stale = []
    for sent in (1, 2):
        stale.append(in_thread(database_fenced_worker().tick))
        wait_until(lambda n=sent: len(participants.received("POST", "/one")) == n)
        lose_the_worker(saga)

    done = drive(database_fenced_worker(), saga)
    for thread in stale:
        thread.join(timeout=5)

    assert done.status == "compensated"
    assert [s["status"] for s in done.steps] == ["compensated", "skipped"]
    assert done.steps[0]["attempts"] == 1
    ones = [(a.phase, a.attempt, a.outcome) for a in attempts(saga) if a.step == "one"]
    assert ones == [
        ("action", 1, "interrupted"),
        ("action", 1, "retryable_error"),
        ("compensation", 1, "succeeded"),
    ]
    keys = {r.header("Idempotency-Key") for r in participants.received("POST", "/one")}
    assert keys == {f"{saga.id}:one:action"}
    assert paths(participants) == ["/one", "/one", "/undo-one"]
