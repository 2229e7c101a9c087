"""A running worker: lease renewal during a long call, cancel of a waiting saga, the SAGA
log lines and the event hook."""

import json
import logging
import time

import pytest

from sagas.engine import control, store
from sagas.engine.worker import Worker
from tests.participants import Reply
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


def one_step(participants, **retry):
    url = participants.url
    return definition_create(
        [step("one", call(url("/one"), timeout=10), call(url("/undo")), retry=retry or None)]
    )


def test_the_lease_is_renewed_while_a_long_call_is_in_flight(participants):
    participants.script("POST", "/one", Reply(200, {"slow": True}, delay=2.0))
    holder = Worker(concurrency=1, lease_seconds=1, poll_seconds=0.05, heartbeat_seconds=0.2)
    runner = in_thread(holder.run)
    saga = saga_create(one_step(participants))
    wait_until(lambda: participants.received("POST", "/one"))

    other = Worker(lease_seconds=1)
    deadline = time.monotonic() + 2.5
    while saga_get(saga).status != "completed" and time.monotonic() < deadline:
        assert other.tick() is False  # never due: the holder keeps its lease alive
        time.sleep(0.05)

    holder.stop()
    runner.join(timeout=5)
    assert saga_get(saga).status == "completed"
    assert len(participants.received("POST", "/one")) == 1


def test_cancel_of_a_saga_waiting_for_a_retry_takes_effect_at_once(participants, worker):
    participants.script("POST", "/one", Reply(503))
    saga = saga_create(one_step(participants, delay_seconds=60, max_delay_seconds=60))
    while not participants.received("POST", "/one"):
        worker.tick()
    assert saga_get(saga).next_attempt_at is not None

    control.saga_cancel(saga_id=saga.id)
    started = time.monotonic()
    done = drive(worker, saga)

    assert time.monotonic() - started < 2
    assert done.status == "cancelled" and done.error["code"] == "cancelled"
    assert done.steps[0]["status"] == "compensated"  # its 503 may have taken effect
    assert len(participants.received("POST", "/one")) == 1


def test_every_event_is_one_saga_log_line_and_reaches_the_listeners(participants, worker, caplog):
    events = []
    store.EVENT_LISTENERS.append(events.append)
    try:
        participants.script("POST", "/one", Reply(500), Reply(200, {}))
        saga = saga_create(one_step(participants))
        with caplog.at_level(logging.INFO, logger="sagas.engine"):
            drive(worker, saga)
    finally:
        store.EVENT_LISTENERS.remove(events.append)

    lines = [r for r in caplog.records if r.getMessage().startswith("SAGA")]
    assert [r.event for r in lines] == ["started", "call", "call", "finished"]
    fields = ("saga_id", "definition", "step", "phase", "attempt", "outcome", "duration_ms")
    for line in lines:
        assert all(hasattr(line, name) for name in fields)
        assert line.saga_id == str(saga.id) and line.definition == "checkout"
    first_call = lines[1]
    assert (first_call.step, first_call.phase, first_call.attempt) == ("one", "action", 1)
    assert first_call.outcome == "retryable_error" and first_call.duration_ms > 0
    assert lines[-1].outcome == "completed" and lines[-1].duration_ms > 0
    assert [e["event"] for e in events] == ["started", "call", "call", "finished"]
    assert json.dumps(events)  # plain data, ready for a metrics hook
    assert [a.outcome for a in attempts(saga)] == ["retryable_error", "succeeded"]


@pytest.mark.not_on_sqlite(
    "LISTEN/NOTIFY: on SQLite idle workers poll (test_an_idle_worker_picks_up_new_work_by_polling)"
)
def test_wake_workers_inside_a_transaction_is_delivered_at_commit():
    import select

    import psycopg2
    from django.db import connection, transaction

    from sagas.engine.wakeup import CHANNEL, wake_workers

    params = connection.settings_dict
    listener = psycopg2.connect(
        dbname=params["NAME"], user=params["USER"], host=params["HOST"], port=params["PORT"]
    )
    try:
        listener.autocommit = True
        listener.cursor().execute(f"LISTEN {CHANNEL}")
        with transaction.atomic():
            wake_workers()
            time.sleep(0.1)
            listener.poll()
            assert listener.notifies == []  # not before the commit
        select.select([listener], [], [], 2.0)
        listener.poll()
        assert [n.channel for n in listener.notifies] == [CHANNEL]
    finally:
        listener.close()
