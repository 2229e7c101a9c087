"""Asynchronous steps (DESIGN §9.4) in the engine and the callback endpoint: a 202 parks
the step as `waiting` with no worker holding the saga; the callback (202 / 200 / 409 /
403 / 404 / 400) moves it on; the async timeout compensates; cancel and pause act on a
waiting saga; a callback that beats the recording of its 202 is applied. Real participant
servers, a worker driven a tick at a time, the API through Django's test client, on both
databases."""

import json
import time
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from sagas import selectors
from sagas.engine import control
from sagas.engine.callbacks import callback_token
from sagas.models import SagaInstance
from tests.participants import Held, Reply
from tests.saga_builders import (
    OPERATOR,
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


def warehouse(participants, *, timeout_seconds=60, pick=None, on_failure=None):
    """charge → pick (asynchronous) → ship, whose body uses the pick's callback response."""
    url = participants.url
    participants.script("POST", "/charge", Reply(201, {"id": "p-1"}))
    participants.script("POST", "/pick", pick or Reply(202, {"accepted": True}))
    pick_step = step(
        "pick",
        call(url("/pick"), body={"order": "${input.order}"}),
        call(url("/pick/cancel")),
    )
    pick_step["action"]["async"] = {"timeout_seconds": timeout_seconds}
    if on_failure:
        pick_step["on_failure"] = on_failure
    return definition_create(
        [
            step("charge", call(url("/charge")), call(url("/refund"))),
            pick_step,
            step("ship", call(url("/ship"), body={"box": "${steps.pick.response.box}"})),
        ]
    )


def tick_until(worker, saga, predicate, *, timeout: float = 10.0) -> SagaInstance:
    def reached():
        if not worker.tick():
            time.sleep(0.005)
        current = saga_get(saga)
        return current if predicate(current) else None

    return wait_until(reached, timeout=timeout, interval=0)


def waiting_on(worker, saga) -> SagaInstance:
    return tick_until(worker, saga, lambda s: s.steps[1]["status"] == "waiting")


def callback_of(participants) -> tuple[str, str]:
    """(path, token) the participant of the asynchronous step was sent, last call."""
    request = participants.received("POST", "/pick")[-1]
    return urlsplit(request.header("X-Saga-Callback-Url")).path, request.header(
        "X-Saga-Callback-Token"
    )


def post_callback(path, token, body, **headers):
    api = APIClient()
    if token is not None:
        headers["HTTP_X_SAGA_CALLBACK_TOKEN"] = token
    return api.post(path, body, format="json", **headers)


def history(saga):
    return [(e["event"], e["step"]) for e in selectors.saga_history(saga_id=saga.id)]


def test_a_202_waits_without_a_worker_and_the_callback_response_feeds_later_steps(
    participants, worker
):
    saga = saga_create(warehouse(participants), {"order": "A-1"})

    waiting = waiting_on(worker, saga)

    assert waiting.status == "running"
    assert waiting.lease_token is None  # no worker holds it
    assert worker.tick() is False  # nothing due: the saga waits in the database
    request = participants.received("POST", "/pick")[0]
    assert request.header("X-Saga-Callback-Url") == (
        f"{settings.SAGA_PUBLIC_URL}/api/sagas/{saga.id}/steps/pick/callback/"
    )
    path, token = callback_of(participants)
    assert token == callback_token(settings.SECRET_KEY, str(saga.id), "pick", 1)
    assert participants.received("POST", "/charge")[0].header("X-Saga-Callback-Url") is None

    answer = post_callback(path, token, {"outcome": "succeeded", "response": {"box": "B-7"}})

    assert answer.status_code == 202, answer.content
    assert answer.json() == {
        "saga": str(saga.id),
        "step": "pick",
        "outcome": "succeeded",
        "recorded": True,
    }
    done = drive(worker, saga)
    assert done.status == "completed"
    assert done.steps[1]["status"] == "succeeded"
    assert done.steps[1]["response"] == {"box": "B-7"}
    assert participants.received("POST", "/ship")[0].body == {"box": "B-7"}
    assert history(saga) == [
        ("step_succeeded", "charge"),
        ("step_waiting", "pick"),
        ("step_succeeded", "pick"),
        ("step_succeeded", "ship"),
        ("finished", None),
    ]
    # The token is a credential: never stored in /logs/ or the history.
    logged = [a.request_headers for a in attempts(saga) if a.step == "pick"]
    assert logged[0]["X-Saga-Callback-Token"] == "***"
    assert token not in json.dumps(selectors.saga_history(saga_id=saga.id), default=str)

    again = post_callback(path, token, {"outcome": "succeeded", "response": {"box": "B-7"}})
    assert again.status_code == 200 and again.json()["recorded"] is False
    other = post_callback(path, token, {"outcome": "succeeded", "response": {"box": "B-8"}})
    assert other.status_code == 409


def test_duplicate_and_conflicting_callbacks_while_the_first_is_pending(participants, worker):
    saga = saga_create(warehouse(participants), {"order": "A-2"})
    waiting_on(worker, saga)
    path, token = callback_of(participants)
    body = {"outcome": "succeeded", "response": {"box": "B-1"}}

    assert post_callback(path, token, body).status_code == 202
    assert post_callback(path, token, body).status_code == 200
    conflicting = post_callback(path, token, {"outcome": "failed", "error": "no stock"})

    assert conflicting.status_code == 409
    assert conflicting.json()["code"] == "conflict"
    assert drive(worker, saga).status == "completed"


def test_a_failed_callback_compensates_the_earlier_steps(participants, worker):
    saga = saga_create(warehouse(participants), {"order": "A-3"})
    waiting_on(worker, saga)
    path, token = callback_of(participants)

    answer = post_callback(path, token, {"outcome": "failed", "error": "out of stock"})
    done = drive(worker, saga)

    assert answer.status_code == 202
    assert done.status == "compensated"
    assert [s["status"] for s in done.steps] == ["compensated", "failed", "skipped"]
    assert done.steps[1]["error"] == "callback: out of stock"
    assert done.error["code"] == "step_failed" and done.error["step"] == "pick"
    assert len(participants.received("POST", "/refund")) == 1
    assert participants.received("POST", "/pick/cancel") == []  # it did not happen


def test_no_callback_within_the_async_timeout_compensates_the_step_as_uncertain(
    participants, worker
):
    saga = saga_create(warehouse(participants, timeout_seconds=1), {"order": "A-4"})
    waiting_on(worker, saga)
    path, token = callback_of(participants)

    done = drive(worker, saga)

    assert done.status == "compensated"
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "skipped"]
    assert done.error["message"] == "no callback within 1 s"
    assert len(participants.received("POST", "/pick/cancel")) == 1
    assert len(participants.received("POST", "/refund")) == 1
    late = post_callback(path, token, {"outcome": "succeeded", "response": {}})
    assert late.status_code == 409


def test_tokens_of_another_step_or_saga_are_refused(participants, worker):
    definition = warehouse(participants)
    first = saga_create(definition, {"order": "A-5"})
    second = saga_create(definition, {"order": "A-6"})
    waiting_on(worker, first)
    first_path, first_token = callback_of(participants)
    waiting_on(worker, second)
    second_path, second_token = callback_of(participants)
    body = {"outcome": "succeeded", "response": {"box": "B"}}

    assert post_callback(first_path, second_token, body).status_code == 403  # valid, other saga
    assert post_callback(first_path, "0" * 64, body).status_code == 403
    assert post_callback(first_path, None, body).status_code == 403
    charge_path = first_path.replace("/pick/", "/charge/")
    assert post_callback(charge_path, first_token, body).status_code == 403
    assert post_callback(first_path.replace("/pick/", "/nope/"), first_token, body).status_code == (
        404
    )
    unknown = first_path.replace(str(first.id), "00000000-0000-0000-0000-000000000000")
    assert post_callback(unknown, first_token, body).status_code == 404
    for bad in ({"outcome": "maybe"}, {"outcome": "succeeded", "extra": 1}, [], {}):
        answer = post_callback(first_path, first_token, bad)
        assert answer.status_code == 400, bad
        assert answer.json()["code"] == "validation_error"
    # Nothing was recorded by the refusals.
    assert saga_get(first).callback is None
    assert post_callback(second_path, second_token, body).status_code == 202


def test_cancel_while_waiting_compensates_at_once_and_a_later_callback_conflicts(
    participants, worker
):
    saga = saga_create(warehouse(participants), {"order": "A-7"})
    waiting_on(worker, saga)
    path, token = callback_of(participants)

    cancelled = control.saga_cancel(saga_id=saga.id)

    assert cancelled.status == "compensating"  # at once: no call in flight
    late = post_callback(path, token, {"outcome": "succeeded", "response": {"box": "B"}})
    assert late.status_code == 409
    done = drive(worker, saga)
    assert done.status == "cancelled" and done.error["code"] == "cancelled"
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "skipped"]
    calls = [f"{r.method} {r.path}" for r in participants.received()]
    assert calls == ["POST /charge", "POST /pick", "POST /pick/cancel", "POST /refund"]


def test_a_callback_before_the_202_is_recorded_is_kept_and_applied(participants, worker):
    held = Held(Reply(202, {"accepted": True}))
    saga = saga_create(warehouse(participants, pick=held), {"order": "A-8"})
    runner = in_thread(lambda: [worker.tick() for _ in range(2)])
    wait_until(lambda: participants.received("POST", "/pick"), timeout=10)
    path, token = callback_of(participants)

    answer = post_callback(path, token, {"outcome": "succeeded", "response": {"box": "B-9"}})
    held.release()
    runner.join(timeout=10)
    done = drive(worker, saga)

    assert answer.status_code == 202
    assert done.status == "completed"
    assert participants.received("POST", "/ship")[0].body == {"box": "B-9"}
    assert done.callback is None  # applied, then cleared
    assert ("step_waiting", "pick") in history(saga)


def test_pause_while_waiting_is_at_once_and_a_callback_is_applied_on_resume(participants, worker):
    saga = saga_create(warehouse(participants), {"order": "A-9"})
    waiting_on(worker, saga)
    path, token = callback_of(participants)

    paused = control.saga_pause(saga_id=saga.id, actor=OPERATOR)
    answer = post_callback(path, token, {"outcome": "succeeded", "response": {"box": "B-2"}})

    assert paused.status == "paused"
    assert answer.status_code == 202
    assert worker.tick() is False  # paused: the callback waits for the resume
    assert saga_get(saga).steps[1]["status"] == "waiting"
    control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    done = drive(worker, saga)
    assert done.status == "completed"
    assert participants.received("POST", "/ship")[0].body == {"box": "B-2"}


def test_a_failed_callback_with_on_failure_pause_pauses_and_a_resume_calls_again(
    participants, worker
):
    saga = saga_create(warehouse(participants, on_failure="pause"), {"order": "A-10"})
    waiting_on(worker, saga)
    path, token = callback_of(participants)
    post_callback(path, token, {"outcome": "failed", "error": "aisle blocked"})

    paused = tick_until(worker, saga, lambda s: s.status == "paused")

    assert paused.steps[1]["status"] == "failed"
    control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    waiting_on(worker, saga)
    path, second = callback_of(participants)
    assert second != token  # its second run: a token of its own
    assert post_callback(path, token, {"outcome": "succeeded"}).status_code == 403
    again = post_callback(path, second, {"outcome": "succeeded", "response": {"box": "B"}})
    assert again.status_code == 202
    assert drive(worker, saga).status == "completed"


def test_any_other_2xx_of_an_async_action_succeeds_at_once(participants, worker):
    saga = saga_create(warehouse(participants, pick=Reply(200, {"box": "B-3"})), {"order": "A"})

    done = drive(worker, saga)

    assert done.status == "completed"
    assert participants.received("POST", "/ship")[0].body == {"box": "B-3"}
    assert ("step_waiting", "pick") not in history(saga)


def test_a_resumed_timed_out_step_sent_again_with_its_old_key_keeps_its_old_token(
    participants, worker
):
    """After an async timeout under on_failure pause, a plain resume re-sends the same
    request with the same Idempotency-Key (§9.2): its token is that key's, so a participant
    that deduplicates by key can call back with the token it already holds."""
    saga = saga_create(
        warehouse(participants, timeout_seconds=1, on_failure="pause"), {"order": "A-9"}
    )
    waiting_on(worker, saga)
    first_path, first_token = callback_of(participants)
    tick_until(worker, saga, lambda s: s.status == "paused", timeout=15)

    control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    waiting_on(worker, saga)

    first, again = participants.received("POST", "/pick")
    assert again.header("Idempotency-Key") == first.header("Idempotency-Key")
    assert again.header("X-Saga-Callback-Token") == first_token
    answer = post_callback(
        first_path, first_token, {"outcome": "succeeded", "response": {"box": 7}}
    )
    assert answer.status_code == 202
    assert drive(worker, saga).status == "completed"
    assert participants.received("POST", "/ship")[0].body == {"box": 7}
