"""Parallel groups (DESIGN §9.3) in the engine: the members' calls overlap, later steps use
their responses, a member's failure lets the calls in flight finish and undoes the group
(concurrently) before the earlier steps, an uncertain member is undone with the others.
Real participant servers, sagas started through the service (the start's own SQL builds
the members' steps), a worker driven a tick at a time, on both databases."""

from urllib.parse import urlsplit

import pytest
from rest_framework.test import APIClient

from sagas.engine import control
from sagas.services import saga_start
from tests.participants import Held, Reply
from tests.saga_builders import (
    OPERATOR,
    attempts,
    call,
    definition_create,
    drive,
    in_thread,
    saga_get,
    step,
)
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]

MEMBERS = ("stock", "card", "points")


def grouped(participants, replies: dict | None = None, *, member_timeout=None, retry=None):
    """order → prepare (stock | card | points, each ~300 ms) → ship, whose body uses two
    members' responses. `replies`: a member's script instead of its 201."""
    url = participants.url
    for name in MEMBERS:
        script = (replies or {}).get(name, Reply(201, {"id": f"{name}-1"}, delay=0.3))
        participants.script("POST", f"/{name}", *(script if isinstance(script, list) else [script]))
    participants.script("POST", "/order", Reply(201, {"id": "o-1"}))
    members = [
        step(
            name,
            call(
                url(f"/{name}"),
                body={"order": "${steps.order.response.id}"},
                timeout=member_timeout,
            ),
            call(url(f"/{name}/cancel")),
            retry=retry,
        )
        for name in MEMBERS
    ]
    body = {"stock": "${steps.stock.response.id}", "card": "${steps.card.response.id}"}
    return definition_create(
        [
            step("order", call(url("/order")), call(url("/order/cancel"))),
            {"name": "prepare", "parallel": members},
            step("ship", call(url("/ship"), body=body)),
        ]
    )


def started(definition):
    saga, _ = saga_start(
        definition=definition.name, version=None, saga_input={}, idempotency_key=None
    )
    return saga


def test_members_are_listed_in_definition_order_with_their_group(participants):
    saga = started(grouped(participants))

    assert [(s["name"], s.get("group")) for s in saga.steps] == [
        ("order", None),
        ("stock", "prepare"),
        ("card", "prepare"),
        ("points", "prepare"),
        ("ship", None),
    ]


def test_members_calls_overlap_and_a_later_step_uses_two_of_them(participants, worker):
    saga = started(grouped(participants))

    done = drive(worker, saga)

    assert done.status == "completed", done.error
    calls = [participants.received("POST", f"/{name}")[0] for name in MEMBERS]
    # Every member's call arrived before any of them was answered: they overlapped.
    assert max(c.at for c in calls) < min(c.answered for c in calls)
    assert participants.received("POST", "/ship")[0].body == {"stock": "stock-1", "card": "card-1"}
    assert [s["status"] for s in done.steps] == ["succeeded"] * 5
    assert sorted(a.step for a in attempts(saga)) == sorted(["order", *MEMBERS, "ship"])


def test_a_rejected_member_lets_the_others_finish_then_undoes_group_before_earlier_steps(
    participants, worker
):
    rejected = {"card": Reply(422, {"error": "card declined"}, delay=0.05)}
    saga = started(grouped(participants, rejected))

    done = drive(worker, saga)

    assert done.status == "compensated"
    assert done.error["step"] == "card" and done.error["code"] == "step_failed"
    by_name = {s["name"]: s for s in done.steps}
    assert by_name["stock"]["status"] == by_name["points"]["status"] == "compensated"
    assert by_name["card"]["status"] == "failed"
    assert by_name["order"]["status"] == "compensated"
    assert by_name["ship"]["status"] == "skipped"
    assert participants.received("POST", "/card/cancel") == []
    undone = [participants.received("POST", f"/{n}/cancel")[0] for n in ("stock", "points")]
    order_undone = participants.received("POST", "/order/cancel")[0]
    # The calls in flight finished (recorded as succeeded) before any undo began …
    finished = [participants.received("POST", f"/{n}")[0].answered for n in ("stock", "points")]
    assert max(finished) <= min(c.at for c in undone)
    # … and every undo of the group ended before the earlier step's undo started.
    assert max(c.answered for c in undone) <= order_undone.at
    outcomes = {(a.step, a.phase): a.outcome for a in attempts(saga)}
    assert outcomes[("stock", "action")] == outcomes[("points", "action")] == "succeeded"
    assert outcomes[("card", "action")] == "permanent_error"


def test_a_member_that_timed_out_is_compensated_with_the_others(participants, worker):
    slow = {"card": Reply(201, {"id": "card-1"}, delay=1.5)}
    definition = grouped(participants, slow, member_timeout=0.5, retry={"max_attempts": 1})

    done = drive(worker, started(definition))

    assert done.status == "compensated"
    by_name = {s["name"]: s for s in done.steps}
    assert by_name["card"]["status"] == "compensated"  # uncertain: it may have happened
    for name in ("stock", "card", "points", "order"):
        assert len(participants.received("POST", f"/{name}/cancel")) == 1, name


def test_a_member_waiting_for_a_retry_does_not_hold_the_worker(participants, worker):
    busy = {"card": [Reply(503), Reply(201, {"id": "card-1"})]}
    definition = grouped(
        participants, busy, retry={"delay_seconds": 1, "max_delay_seconds": 1, "max_attempts": 2}
    )
    saga = started(definition)

    worker.tick()  # every member called once; card's retry is due later: released

    waiting = saga_get(saga)
    assert waiting.status == "running" and not waiting.lease_owner
    assert [s["attempts"] for s in waiting.steps[1:4]] == [1, 1, 1]
    assert [s["status"] for s in waiting.steps[1:4]] == ["succeeded", "running", "succeeded"]
    assert waiting.next_attempt_at.isoformat() == waiting.steps[2]["due_at"]
    done = drive(worker, saga)
    assert done.status == "completed"
    assert [s["attempts"] for s in done.steps] == [1, 1, 2, 1, 1]


def test_pause_waits_for_members_in_flight_and_resume_finishes_the_group(participants, worker):
    held = Held(Reply(201, {"id": "stock-1"}))
    saga = started(grouped(participants, {"stock": held}))
    thread = in_thread(worker.tick)
    wait_until(lambda: participants.received("POST", "/stock"), timeout=10)

    control.saga_pause(saga_id=saga.id, actor=OPERATOR)
    held.release()
    thread.join(10)

    paused = saga_get(saga)
    assert paused.status == "paused"
    assert [s["status"] for s in paused.steps[1:4]] == ["succeeded"] * 3
    assert participants.received("POST", "/ship") == []
    control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    assert drive(worker, saga).status == "completed"


def test_cancel_while_members_are_in_flight_undoes_them_once_recorded(participants, worker):
    held = Held(Reply(201, {"id": "stock-1"}))
    saga = started(grouped(participants, {"stock": held}))
    thread = in_thread(worker.tick)
    wait_until(lambda: participants.received("POST", "/stock"), timeout=10)

    control.saga_cancel(saga_id=saga.id, actor=OPERATOR)
    held.release()
    thread.join(10)
    done = drive(worker, saga)

    assert done.status == "cancelled"
    by_name = {s["name"]: s["status"] for s in done.steps}
    assert by_name["order"] == "compensated" and by_name["ship"] == "skipped"
    for name in MEMBERS:  # a member not started when the cancel came is not started at all
        called = bool(participants.received("POST", f"/{name}"))
        assert by_name[name] == ("compensated" if called else "skipped"), name
        assert len(participants.received("POST", f"/{name}/cancel")) == int(called), name
    stock_answered = participants.received("POST", "/stock")[0].answered
    assert stock_answered <= participants.received("POST", "/stock/cancel")[0].at
    assert participants.received("POST", "/ship") == []


def test_an_async_member_waits_for_its_callback_and_a_later_step_uses_its_response(
    participants, worker
):
    definition = grouped(participants, {"card": Reply(202, {"accepted": True})})
    definition.steps[1]["parallel"][1]["action"]["async"] = {"timeout_seconds": 60}
    definition.save(update_fields=["steps"])
    saga = started(definition)

    worker.tick()  # stock and points succeed; card waits: released, no worker holds it

    waiting = saga_get(saga)
    assert waiting.status == "running" and not waiting.lease_owner
    assert waiting.steps[2]["status"] == "waiting"
    request = participants.received("POST", "/card")[0]
    answer = APIClient().post(
        urlsplit(request.header("X-Saga-Callback-Url")).path,
        {"outcome": "succeeded", "response": {"id": "card-9"}},
        format="json",
        HTTP_X_SAGA_CALLBACK_TOKEN=request.header("X-Saga-Callback-Token"),
    )
    assert answer.status_code == 202, answer.content
    done = drive(worker, saga)
    assert done.status == "completed"
    assert participants.received("POST", "/ship")[0].body == {"stock": "stock-1", "card": "card-9"}


def test_a_member_that_pauses_on_failure_runs_again_as_its_next_run_after_resume(
    participants, worker
):
    again = {"card": [Reply(422, {"error": "card declined"}), Reply(201, {"id": "card-2"})]}
    definition = grouped(participants, again)
    definition.steps[1]["parallel"][1]["on_failure"] = "pause"
    definition.save(update_fields=["steps"])
    saga = started(definition)

    worker.tick()

    paused = saga_get(saga)
    assert paused.status == "paused" and paused.error["step"] == "card"
    assert [s["status"] for s in paused.steps[1:4]] == ["succeeded", "failed", "succeeded"]
    control.saga_resume(saga_id=saga.id, actor=OPERATOR)
    done = drive(worker, saga)
    assert done.status == "completed"
    keys = [r.header("Idempotency-Key") for r in participants.received("POST", "/card")]
    assert keys == [f"{saga.id}:card:action", f"{saga.id}:card:action:2"]
    assert len(participants.received("POST", "/stock")) == 1  # the others are not re-sent
