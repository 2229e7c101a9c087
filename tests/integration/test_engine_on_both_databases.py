"""The engine driven a tick at a time, on PostgreSQL and on SQLite (`make run`'s embedded
default; the second run of `make test`). What a client sees must not depend on the
database: statuses, attempt counts, the calls and their order."""

import time

import pytest
from django.db import connection
from django.utils import timezone

from sagas.engine import control
from sagas.engine.retry import JITTER
from sagas.engine.worker import Worker
from sagas.models import TERMINAL_STATUSES, SagaInstance
from tests.participants import Reply
from tests.saga_builders import (
    attempts,
    call,
    calls_made,
    checkout_definition,
    definition_create,
    drive,
    in_thread,
    saga_create,
    saga_get,
    step,
)
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]

ORDER = {"order_id": "A-1"}
ORDER_CALLS = ["POST /reserve", "POST /charge", "POST /ship"]


def test_happy_path_runs_every_action_once_in_order(participants, worker):
    saga = saga_create(checkout_definition(participants), ORDER)

    done = drive(worker, saga)

    assert done.status == "completed" and done.error is None
    assert [s["status"] for s in done.steps] == ["succeeded"] * 3
    assert [s["attempts"] for s in done.steps] == [1, 1, 1]
    assert done.steps[1]["response"] == {"id": "p-1"}
    assert calls_made(participants) == ORDER_CALLS
    assert participants.received("POST", "/charge")[0].body == {"reservation": "r-9"}
    assert [(a.step, a.attempt, a.outcome) for a in attempts(saga)] == [
        ("reserve", 1, "succeeded"),
        ("charge", 1, "succeeded"),
        ("ship", 1, "succeeded"),
    ]


def test_every_call_is_one_attempt_when_two_workers_race_for_a_saga(participants, worker):
    """Issue 8 item 19: six calls (408, 425, 500, 502, 504, then 201) are six attempts.

    Two workers: right after the other worker's first statement of its claim, `worker`
    claims the saga, makes its calls and releases it. The other worker must then not run
    the saga from what it read before (SQLite did, making a call twice under one number).
    """
    definition = checkout_definition(participants, retry={"max_attempts": 6})
    statuses = [408, 425, 500, 502, 504]
    participants.script(
        "POST", "/charge", *[Reply(code) for code in statuses], Reply(201, {"id": "p-1"})
    )
    saga = saga_create(definition, ORDER)
    other = Worker(concurrency=1, poll_seconds=0.05)

    with connection.execute_wrapper(_after_first_statement(lambda: in_thread(worker.tick).join())):
        other.tick()
    done = drive(worker, saga)

    assert done.status == "completed"
    assert [s["attempts"] for s in done.steps] == [1, 6, 1]
    assert calls_made(participants) == ["POST /reserve", *["POST /charge"] * 6, "POST /ship"]
    charge = [a for a in attempts(saga) if a.step == "charge"]
    assert [(a.attempt, a.status_code) for a in charge] == list(
        zip(range(1, 7), [*statuses, 201], strict=True)
    )
    assert [a.outcome for a in charge] == ["retryable_error"] * 5 + ["succeeded"]


def _after_first_statement(action):
    """A database execute wrapper that runs `action` once, after the first statement."""
    pending = [action]

    def wrapper(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if pending:
            pending.pop()()
        return result

    return wrapper


def test_a_rejected_step_compensates_the_earlier_ones_in_reverse_order(participants, worker):
    definition = checkout_definition(participants)
    participants.script("POST", "/ship", Reply(422, {"error": "no address"}))
    saga = saga_create(definition, ORDER)

    done = drive(worker, saga)

    assert done.status == "compensated"
    assert done.error == {"code": "step_failed", "step": "ship", "message": "HTTP 422: no address"}
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "failed"]
    assert calls_made(participants) == [*ORDER_CALLS, "POST /refund", "DELETE /reserve/r-9"]
    assert participants.received("POST", "/refund")[0].body == {"payment": "p-1"}


def test_a_retry_waits_in_the_database_until_it_is_due(participants, worker):
    definition = checkout_definition(
        participants, retry={"delay_seconds": 1, "max_delay_seconds": 1}
    )
    participants.script("POST", "/charge", Reply(503), Reply(201, {"id": "p-1"}))
    saga = saga_create(definition, ORDER)
    while len(participants.received("POST", "/charge")) < 1:
        worker.tick()

    waiting = saga_get(saga)
    assert waiting.status == "running" and waiting.lease_token is None
    assert waiting.next_attempt_at > timezone.now()
    assert worker.tick() is False  # not due yet: nothing is claimed, nothing is called
    done = drive(worker, saga)

    assert done.status == "completed" and done.steps[1]["attempts"] == 2
    first, second = participants.received("POST", "/charge")
    assert second.at - first.at >= 1 - JITTER
    assert first.header("Idempotency-Key") == second.header("Idempotency-Key")


def test_cancel_of_a_waiting_saga_compensates_in_reverse_order(participants, worker):
    definition = checkout_definition(
        participants, retry={"delay_seconds": 600, "max_delay_seconds": 600}
    )
    participants.script("POST", "/charge", Reply(503))
    saga = saga_create(definition, ORDER)
    while len(participants.received("POST", "/charge")) < 1:
        worker.tick()

    control.saga_cancel(saga_id=saga.id)
    started = time.monotonic()
    done = drive(worker, saga)

    assert time.monotonic() - started < 2  # the 600 s retry delay is not waited out
    assert done.status == "cancelled" and done.error["code"] == "cancelled"
    # The 503 may have taken effect: the charge is refunded, then the reservation released.
    assert [s["status"] for s in done.steps] == ["compensated", "compensated", "skipped"]
    assert calls_made(participants) == [
        "POST /reserve",
        "POST /charge",
        "POST /refund",
        "DELETE /reserve/r-9",
    ]


def test_two_workers_of_three_threads_call_every_action_once(participants):
    """The single-process equivalent of two worker processes claiming side by side (SKIP
    LOCKED on PostgreSQL, the conditional UPDATE on SQLite; tests/e2e has the processes)."""
    url = participants.url
    definition = definition_create(
        [step("one", call(url("/one"))), step("two", call(url("/two")))], name="pair"
    )
    sagas = [saga_create(definition, {"n": n}) for n in range(40)]
    workers = [Worker(concurrency=3, poll_seconds=0.05) for _ in range(2)]
    runners = [in_thread(w.run) for w in workers]
    try:
        wait_until(lambda: _all_finished(sagas), timeout=30)
    finally:
        for w in workers:
            w.stop()
        for runner in runners:
            runner.join(timeout=10)

    assert {saga_get(s).status for s in sagas} == {"completed"}
    keys = [r.header("Idempotency-Key") for r in participants.received()]
    expected = {f"{s.id}:{name}:action" for s in sagas for name in ("one", "two")}
    assert sorted(keys) == sorted(expected)  # each action called once, none missed
    assert {(a.step, a.attempt, a.outcome) for s in sagas for a in attempts(s)} == {
        ("one", 1, "succeeded"),
        ("two", 1, "succeeded"),
    }


def _all_finished(sagas) -> bool:
    ids = [s.id for s in sagas]
    return (
        not SagaInstance.objects.filter(id__in=ids).exclude(status__in=TERMINAL_STATUSES).exists()
    )
