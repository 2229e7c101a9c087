"""Operator repair in the engine (DESIGN §9.2): on_failure pause, pause and resume, input
patches, rewinds, skips, the deadline while paused, cancel of a paused saga, the run
generations of Idempotency-Keys, and the history. Driven a tick at a time against real
participant servers, on both databases."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from sagas import selectors
from sagas.engine import control
from sagas.errors import Conflict, Invalid
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


def paused_on(worker, saga, *, timeout: float = 10.0):
    """Tick `worker` until `saga` is paused."""

    def paused():
        if not worker.tick():
            time.sleep(0.005)
        current = saga_get(saga)
        assert current.status not in ("completed", "compensated", "cancelled", "failed")
        return current if current.status == "paused" else None

    return wait_until(paused, timeout=timeout, interval=0)


def address_check(request):
    """The shipping participant: 422 unless the body carries a street."""
    if not (request.body or {}).get("street"):
        return Reply(422, {"error": "address invalid"})
    return Reply(201, {"label": "L-7"})


def order(participants, *, on_failure="pause", timeout_seconds=60.0, retry=None):
    """reserve → address (checks the street, on_failure as given) → ship."""
    url = participants.url
    participants.script("POST", "/reserve", Reply(201, {"id": "r-9"}))
    participants.script("POST", "/address", address_check)
    address = step(
        "address",
        call(url("/address"), body={"street": "${input.street}"}),
        call(url("/address/undo")),
        retry=retry,
    )
    address["on_failure"] = on_failure
    return definition_create(
        [
            step(
                "reserve",
                call(url("/reserve")),
                call(url("/reserve/${steps.reserve.response.id}"), method="DELETE"),
            ),
            address,
            step(
                "ship",
                call(url("/ship"), body={"label": "${steps.address.response.label}"}),
                call(url("/unship")),
            ),
        ],
        timeout_seconds=timeout_seconds,
    )


def address_in_flight(participants, worker):
    """A saga whose `address` call is held in flight by the worker ticking in a thread:
    (saga, the held reply to release, the thread)."""
    definition = order(participants, on_failure="compensate")
    held = Held(Reply(201, {"label": "L-1"}))
    participants.script("POST", "/address", held)
    saga = saga_create(definition, {"street": "3 Oak"})
    runner = in_thread(lambda: [worker.tick() for _ in range(3)])
    wait_until(lambda: participants.received("POST", "/address"))
    return saga, held, runner


def keys(participants, method, path):
    return [r.header("Idempotency-Key") for r in participants.received(method, path)]


def events(saga):
    return [(e["event"], e["step"], e["actor"]) for e in selectors.saga_history(saga_id=saga.id)]


def test_a_rejected_step_pauses_and_a_patched_resume_completes_without_undoing(
    participants, worker
):
    saga = saga_create(order(participants), {"street": ""})

    paused = paused_on(worker, saga)

    assert [s["status"] for s in paused.steps] == ["succeeded", "failed", "pending"]
    assert paused.error["code"] == "step_failed" and paused.error["step"] == "address"
    assert participants.received("DELETE", "/reserve/r-9") == []  # nothing undone

    control.saga_resume(
        saga_id=saga.id, actor=OPERATOR, reason="typo", input_patch={"street": "1 Main St"}
    )
    done = drive(worker, saga)

    assert done.status == "completed" and done.input == {"street": "1 Main St"}
    assert keys(participants, "POST", "/reserve") == [f"{saga.id}:reserve:action"]
    assert keys(participants, "POST", "/address") == [
        f"{saga.id}:address:action",
        f"{saga.id}:address:action:2",
    ]
    assert participants.received("POST", "/address")[1].body == {"street": "1 Main St"}
    assert participants.received("POST", "/ship")[0].body == {"label": "L-7"}
    assert [(a.step, a.run, a.attempt, a.outcome) for a in attempts(saga)] == [
        ("reserve", 1, 1, "succeeded"),
        ("address", 1, 1, "permanent_error"),
        ("address", 2, 1, "succeeded"),
        ("ship", 1, 1, "succeeded"),
    ]
    assert done.steps[1]["run"] == 2 and done.steps[1]["attempts"] == 1
    history = selectors.saga_history(saga_id=saga.id)
    assert events(saga) == [
        ("step_succeeded", "reserve", "system"),
        ("step_failed", "address", "system"),
        ("paused", "address", "system"),
        ("resumed", None, "internal"),
        ("step_succeeded", "address", "system"),
        ("step_succeeded", "ship", "system"),
        ("finished", None, "system"),
    ]
    resumed = history[3]
    assert resumed["key_id"] == "0a1b2c3d" and resumed["reason"] == "typo"
    assert resumed["details"] == {"input_patch": {"street": "1 Main St"}}


def test_from_step_compensates_the_steps_it_reruns_first_in_reverse(participants, worker):
    saga = saga_create(order(participants), {"street": ""})
    paused_on(worker, saga)

    control.saga_resume(
        saga_id=saga.id, actor=OPERATOR, from_step="reserve", input_patch={"street": "2 Elm"}
    )
    done = drive(worker, saga)

    assert done.status == "completed"
    made = [f"{r.method} {r.path} {r.header('Idempotency-Key')}" for r in participants.received()]
    assert made == [
        f"POST /reserve {saga.id}:reserve:action",
        f"POST /address {saga.id}:address:action",
        f"DELETE /reserve/r-9 {saga.id}:reserve:compensation",
        f"POST /reserve {saga.id}:reserve:action:2",
        f"POST /address {saga.id}:address:action:2",
        f"POST /ship {saga.id}:ship:action",  # its first run: no suffix
    ]
    assert [s["run"] for s in done.steps] == [2, 2, 1]


def test_from_step_after_the_stop_and_unknown_steps_are_refused_and_change_nothing(
    participants, worker
):
    saga = saga_create(order(participants), {"street": ""})
    before = paused_on(worker, saga)

    for body, field in (
        ({"from_step": "ship"}, "from_step"),
        ({"from_step": "nope"}, "from_step"),
        ({"from_step": "reserve", "skip": {"response": {}}}, "skip"),
        ({"input_patch": ["not", "an", "object"]}, "input_patch"),
        ({"input_patch": {"deep": _nested(30)}}, "input_patch"),
    ):
        with pytest.raises(Invalid) as refused:
            control.saga_resume(saga_id=saga.id, actor=OPERATOR, **body)
        assert refused.value.field == field, body

    after = saga_get(saga)
    assert (after.status, after.steps, after.input) == (before.status, before.steps, before.input)
    assert events(saga)[-1][0] == "paused"


def _nested(depth):
    value = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_skip_marks_the_step_succeeded_and_later_templates_use_its_response(participants, worker):
    saga = saga_create(order(participants), {"street": ""})
    paused_on(worker, saga)

    control.saga_resume(saga_id=saga.id, actor=OPERATOR, skip={"response": {"label": "HAND-1"}})
    done = drive(worker, saga)

    assert done.status == "completed"
    assert done.steps[1]["status"] == "succeeded" and done.steps[1]["response"] == {
        "label": "HAND-1"
    }
    assert len(participants.received("POST", "/address")) == 1  # not called again
    assert participants.received("POST", "/ship")[0].body == {"label": "HAND-1"}
    resumed = selectors.saga_history(saga_id=saga.id)[3]
    assert resumed["details"] == {"skip": {"response": {"label": "HAND-1"}}}


def test_pause_while_a_call_is_in_flight_records_it_and_calls_nothing_more(participants, worker):
    saga, held, runner = address_in_flight(participants, worker)

    control.saga_pause(saga_id=saga.id, actor=OPERATOR, reason="hold on")
    assert saga_get(saga).status == "running"  # its worker pauses it at the next transition
    with pytest.raises(Conflict):
        control.saga_pause(saga_id=saga.id, actor=OPERATOR)  # a pause is already pending
    held.release()
    runner.join(10)

    paused = saga_get(saga)
    assert paused.status == "paused" and paused.error is None
    assert [s["status"] for s in paused.steps] == ["succeeded", "succeeded", "pending"]
    assert [a.outcome for a in attempts(saga)] == ["succeeded", "succeeded"]
    assert participants.received("POST", "/ship") == []
    paused_event = selectors.saga_history(saga_id=saga.id)[-1]
    assert (paused_event["event"], paused_event["actor"], paused_event["reason"]) == (
        "paused",
        "internal",
        "hold on",
    )

    control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    done = drive(worker, saga)
    assert done.status == "completed"
    assert keys(participants, "POST", "/ship") == [f"{saga.id}:ship:action"]


def test_pause_during_a_retry_wait_is_at_once_and_resume_continues_the_run(participants, worker):
    definition = order(
        participants, on_failure="compensate", retry={"delay_seconds": 60, "max_delay_seconds": 60}
    )
    participants.script(
        "POST", "/address", Reply(503, {"error": "busy"}), Reply(201, {"label": "L-2"})
    )
    saga = saga_create(definition, {"street": "4 Pine"})
    wait_until(lambda: worker.tick() and saga_get(saga).steps[1]["attempts"] == 1)
    assert saga_get(saga).next_attempt_at > timezone.now() + timedelta(seconds=30)

    control.saga_pause(saga_id=saga.id, actor=OPERATOR)
    assert saga_get(saga).status == "paused"  # no worker holds it: at once

    control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    done = drive(worker, saga)
    assert done.status == "completed"
    # The same run goes on: the retry carries the same key, its attempt number the next.
    assert keys(participants, "POST", "/address") == [f"{saga.id}:address:action"] * 2
    assert [a.attempt for a in attempts(saga) if a.step == "address"] == [1, 2]


def test_paused_time_does_not_count_toward_the_deadline(participants, worker):
    saga = saga_create(order(participants, timeout_seconds=1.0), {"street": ""})
    paused_on(worker, saga)
    deadline = saga_get(saga).deadline_at
    time.sleep(1.2)  # paused longer than the saga's whole timeout

    control.saga_resume(saga_id=saga.id, actor=OPERATOR, input_patch={"street": "5 Ash"})
    assert saga_get(saga).deadline_at >= deadline + timedelta(seconds=1.2)
    done = drive(worker, saga)

    assert done.status == "completed"


def test_cancel_of_a_paused_saga_compensates_what_may_have_happened_in_reverse(
    participants, worker
):
    definition = order(participants)
    participants.script("POST", "/address", Reply(503, {"error": "down"}))
    saga = saga_create(definition, {"street": "6 Fir"})
    paused = paused_on(worker, saga)
    assert paused.steps[1]["status"] == "failed" and paused.steps[1]["uncertain"]

    control.saga_cancel(saga_id=saga.id, actor=OPERATOR, reason="customer gave up")
    done = drive(worker, saga)

    assert done.status == "cancelled" and done.error["code"] == "cancelled"
    undo = [f"{r.method} {r.path}" for r in participants.received() if "undo" in r.path]
    undo += [f"{r.method} {r.path}" for r in participants.received("DELETE")]
    assert undo == ["POST /address/undo", "DELETE /reserve/r-9"]
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "skipped"]
    assert events(saga)[-5:] == [
        ("cancel_requested", None, "internal"),
        ("compensating", "address", "system"),
        ("step_succeeded", "address", "system"),
        ("step_succeeded", "reserve", "system"),
        ("finished", None, "system"),
    ]
    history = selectors.saga_history(saga_id=saga.id)
    assert history[-5]["reason"] == "customer gave up"
    assert history[-4]["details"] == {"cause": "cancelled"}
    assert history[-3]["details"]["phase"] == "compensation"


def test_a_plain_resume_of_an_uncertain_step_reuses_its_key(participants, worker):
    definition = order(participants)
    participants.script("POST", "/address", *[Reply(503, {})] * 3, Reply(201, {"label": "L-3"}))
    saga = saga_create(definition, {"street": "7 Elm"})
    paused_on(worker, saga)

    control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    done = drive(worker, saga)

    assert done.status == "completed"
    # The same request again: the participant can tell it is the uncertain one.
    assert keys(participants, "POST", "/address") == [f"{saga.id}:address:action"] * 4
    assert [(a.run, a.attempt) for a in attempts(saga) if a.step == "address"] == [
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 1),
    ]


def test_a_changed_request_after_an_uncertain_step_gets_a_new_key(participants, worker):
    definition = order(participants)
    participants.script("POST", "/address", *[Reply(503, {})] * 3, Reply(201, {"label": "L-4"}))
    saga = saga_create(definition, {"street": "8 Oak"})
    paused_on(worker, saga)

    control.saga_resume(saga_id=saga.id, actor=OPERATOR, input_patch={"street": "8 Oak Rd"})
    done = drive(worker, saga)

    assert done.status == "completed"
    assert keys(participants, "POST", "/address")[-1] == f"{saga.id}:address:action:2"


def test_conflicts(participants, worker):
    saga = saga_create(order(participants), {"street": ""})
    with pytest.raises(Conflict, match="only paused"):
        control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    paused_on(worker, saga)
    with pytest.raises(Conflict, match="already paused"):
        control.saga_pause(saga_id=saga.id, actor=OPERATOR)
    control.saga_resume(saga_id=saga.id, actor=OPERATOR, skip={"response": {"label": "x"}})
    with pytest.raises(Conflict, match="only paused"):
        control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    drive(worker, saga)
    with pytest.raises(Conflict) as finished:
        control.saga_pause(saga_id=saga.id, actor=OPERATOR)
    assert finished.value.saga_status == "completed"


def test_a_pending_saga_pauses_at_once_and_a_cancel_then_wins(participants, worker):
    saga = saga_create(order(participants), {"street": "9 Bay"})
    control.saga_pause(saga_id=saga.id, actor=OPERATOR)
    assert saga_get(saga).status == "paused"
    assert not worker.tick() or saga_get(saga).status == "paused"  # never claimed

    control.saga_cancel(saga_id=saga.id, actor=OPERATOR)
    done = drive(worker, saga)
    assert done.status == "cancelled" and participants.received() == []


def test_a_cancel_accepted_while_a_pause_is_pending_wins(participants, worker):
    saga, held, runner = address_in_flight(participants, worker)

    control.saga_pause(saga_id=saga.id, actor=OPERATOR)
    control.saga_cancel(saga_id=saga.id, actor=OPERATOR)
    held.release()
    runner.join(10)
    done = drive(worker, saga)

    assert done.status == "cancelled"
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "skipped"]
    assert participants.received("POST", "/ship") == []


def test_resumes_racing_busy_workers_run_each_step_once_per_run(participants):
    """Two workers tick without pause while an operator pauses and resumes the same saga
    over and over: every run of every step is called once, and the saga completes."""
    from sagas.engine.worker import Worker

    definition = order(participants, on_failure="compensate")
    participants.script("POST", "/reserve", Reply(201, {"id": "r-9"}, delay=0.1))
    participants.script("POST", "/address", Reply(201, {"label": "L"}, delay=0.1))
    saga = saga_create(definition, {"street": "11 Oak"})
    stop = []

    def busy(worker):
        while not stop:
            if not worker.tick():
                time.sleep(0.002)

    threads = [in_thread(busy, Worker(concurrency=1, poll_seconds=0.01)) for _ in range(2)]
    try:
        for _ in range(20):
            status = saga_get(saga).status
            if status == "completed":
                break
            try:
                if status == "paused":
                    control.saga_resume(saga_id=saga.id, actor=OPERATOR)
                else:
                    control.saga_pause(saga_id=saga.id, actor=OPERATOR)
            except Conflict:
                pass  # a pause still pending, or already paused: the race is the point
            time.sleep(0.02)
        if saga_get(saga).status == "paused":
            control.saga_resume(saga_id=saga.id, actor=OPERATOR)
        wait_until(lambda: saga_get(saga).status == "completed", timeout=20)
    finally:
        stop.append(True)
        for thread in threads:
            thread.join(10)

    sent = [r.header("Idempotency-Key") for r in participants.received()]
    assert len(sent) == len(set(sent)) == 3  # each action once: no run was started twice
    assert [a.outcome for a in attempts(saga)] == ["succeeded"] * 3
    happened = [event for event, _, _ in events(saga)]
    assert happened.count("paused") == happened.count("resumed") >= 2
