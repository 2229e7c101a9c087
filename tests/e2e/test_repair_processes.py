"""Operator repair across real worker processes: a resumed saga whose worker is killed
mid-call goes on on another worker with the same generation keys (DESIGN §9.2)."""

import pytest

from sagas.engine import control
from sagas.engine.wakeup import wake_workers
from sagas.models import WorkerHeartbeat
from tests.participants import Reply
from tests.saga_builders import attempts, call, definition_create, saga_create, saga_get, step
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def test_kill_9_right_after_a_resume_continues_with_the_same_generation_keys(participants, workers):
    url = participants.url
    participants.script(
        "POST",
        "/two",
        Reply(422, {"error": "bad amount"}),
        Reply(200, {"late": True}, delay=30),  # the resumed call: its worker dies in it
        Reply(200, {"ok": True}),
    )
    two = step("two", call(url("/two"), body={"amount": "${input.amount}"}), call(url("/undo")))
    two["on_failure"] = "pause"
    definition = definition_create([step("one", call(url("/one")), call(url("/undo-one"))), two])
    doomed = workers(concurrency=1, SAGA_LEASE_SECONDS=1)
    wait_until(lambda: WorkerHeartbeat.objects.count() >= 1, timeout=20)
    saga = saga_create(definition, {"amount": -5})
    wake_workers()
    wait_until(lambda: saga_get(saga).status == "paused", timeout=20)

    control.saga_resume(
        saga_id=saga.id, actor=control.Actor("internal", "feedf00d"), input_patch={"amount": 5}
    )
    wait_until(lambda: len(participants.received("POST", "/two")) == 2, timeout=20)
    doomed.kill()
    workers(concurrency=1, SAGA_LEASE_SECONDS=1)

    wait_until(lambda: saga_get(saga).status == "completed", timeout=30)
    sent = participants.received("POST", "/two")
    assert [r.header("Idempotency-Key") for r in sent] == [
        f"{saga.id}:two:action",
        f"{saga.id}:two:action:2",
        f"{saga.id}:two:action:2",  # re-sent after the crash: the same run, the same key
    ]
    assert [r.body for r in sent] == [{"amount": -5}, {"amount": 5}, {"amount": 5}]
    assert len(participants.received("POST", "/one")) == 1
    assert [(a.step, a.run, a.attempt, a.outcome) for a in attempts(saga)] == [
        ("one", 1, 1, "succeeded"),
        ("two", 1, 1, "permanent_error"),
        ("two", 2, 1, "interrupted"),
        ("two", 2, 1, "succeeded"),
    ]
