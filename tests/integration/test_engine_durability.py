"""Durability and fencing: what is committed when, and who may write."""

import logging
import time
from datetime import timedelta

import psycopg2
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from sagas.engine.locks import SagaLocks, lock_key
from sagas.engine.wakeup import wake_workers
from sagas.engine.worker import Worker
from sagas.models import SagaInstance, WorkerHeartbeat
from sagas.redis_client import redis_client_for
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
from tests.support import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def two_steps(participants, **retry):
    url = participants.url
    return definition_create(
        [
            step("one", call(url("/one")), call(url("/undo-one")), retry=retry or None),
            step("two", call(url("/two")), call(url("/undo-two")), retry=retry or None),
        ]
    )


def db_observer(saga_id):
    """What another database session sees at the moment a participant is called."""
    params = connection.settings_dict
    seen = []

    def observe(request):
        conn = psycopg2.connect(
            dbname=params["NAME"], user=params["USER"], host=params["HOST"], port=params["PORT"]
        )
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
            )
            idle_in_transaction = cur.fetchone()[0]
            cur.execute(
                "SELECT step, attempt, outcome FROM sagas_sagaattempt WHERE saga_id = %s"
                " ORDER BY id",
                [str(saga_id)],
            )
            rows = cur.fetchall()
            cur.execute("SELECT steps FROM sagas_sagainstance WHERE id = %s", [str(saga_id)])
            steps = cur.fetchone()[0]
        finally:
            conn.close()
        seen.append(
            {"path": request.path, "idle_tx": idle_in_transaction, "rows": rows, "steps": steps}
        )
        return Reply(200, {"ok": True})

    return seen, observe


def test_no_call_inside_a_transaction_and_each_transition_committed_first(participants, worker):
    definition = two_steps(participants)
    saga = saga_create(definition)
    seen, observe = db_observer(saga.id)
    participants.script("POST", "/one", observe)
    participants.script("POST", "/two", observe)

    assert drive(worker, saga).status == "completed"

    first, second = seen
    assert first["idle_tx"] == 0 and second["idle_tx"] == 0
    # The call is committed as in flight (in its step) before it is sent; its attempt
    # row is written with its outcome, with the next call's in-flight mark.
    assert first["rows"] == [] and first["steps"][0]["in_flight"]["attempt"] == 1
    assert second["rows"] == [("one", 1, "succeeded")]
    assert second["steps"][1]["in_flight"]["attempt"] == 1
    # The previous transition is committed before the next call starts.
    assert second["steps"][0]["status"] == "succeeded"
    assert second["steps"][1]["status"] == "running"


def test_a_worker_whose_lease_was_taken_over_records_nothing(participants):
    no_redis = SagaLocks(None, 30)
    stale, fresh = Worker(), Worker()
    stale.locks = fresh.locks = no_redis  # the database fence alone
    participants.script("POST", "/one", Reply(200, {"by": "stale"}, delay=0.5))
    saga = saga_create(two_steps(participants))
    runner = in_thread(stale.tick)
    wait_until(lambda: participants.received("POST", "/one"))

    # The stale worker stalls past its lease; another worker takes the saga over.
    past = timezone.now() - timedelta(seconds=1)
    SagaInstance.objects.filter(id=saga.id).update(lease_expires_at=past, next_attempt_at=past)
    participants.script("POST", "/one", Reply(200, {"by": "fresh"}))
    done = drive(fresh, saga)
    runner.join(timeout=5)

    done = saga_get(saga)
    assert done.status == "completed"
    assert done.steps[0]["response"] == {"by": "fresh"}  # the stale success was not recorded
    ones = [(a.attempt, a.outcome, a.error) for a in attempts(saga) if a.step == "one"]
    # The lost call is sent again as the same attempt: an interruption is not an attempt.
    assert ones == [
        (1, "interrupted", "interrupted: the worker was lost during the call"),
        (1, "succeeded", None),
    ]
    assert done.steps[0]["attempts"] == 1
    keys = {r.header("Idempotency-Key") for r in participants.received("POST", "/one")}
    assert keys == {f"{saga.id}:one:action"}


def test_a_held_redis_lock_keeps_a_second_worker_from_calling(participants, worker):
    saga = saga_create(two_steps(participants))
    client = redis.Redis(host=settings.REDIS_HOST, port=settings.REDIS_PORT, db=settings.REDIS_DB)
    client.set(lock_key(saga.id), "someone-else", px=60_000)
    try:
        assert worker.tick() is True
    finally:
        client.delete(lock_key(saga.id))
    waiting = saga_get(saga)
    assert participants.received() == []
    assert waiting.lease_token is None and waiting.status == "pending"
    assert waiting.next_attempt_at > timezone.now()


def test_sagas_run_on_database_leases_when_redis_is_unreachable(participants):
    worker = Worker()
    worker.locks = SagaLocks(redis_client_for(host="127.0.0.1", port=1, timeout=0.2), 30)
    assert drive(worker, saga_create(two_steps(participants))).status == "completed"


@override_settings(SAGA_MAX_RESPONSE_BYTES=64)
def test_stored_responses_are_capped(participants, worker):
    participants.script("POST", "/one", Reply(200, "x" * 100_000))
    done = drive(worker, saga_create(two_steps(participants)))
    assert done.steps[0]["response"] == "x" * 64


@override_settings(SAGA_ALLOWED_HOSTS=["127.0.0.1"])
def test_redirects_to_a_host_not_allowed_are_not_followed(participants, worker):
    # The same server by another name: `localhost` is not in SAGA_ALLOWED_HOSTS.
    elsewhere = f"http://localhost:{participants.port}/x"
    participants.script("POST", "/one", Reply(302, headers={"Location": elsewhere}))
    done = drive(worker, saga_create(two_steps(participants)))
    assert done.status == "compensated"
    assert done.steps[0]["status"] == "failed"
    assert done.error["message"] == f"HTTP 302: redirect to {elsewhere} not followed"
    assert participants.received(path="/x") == []


@override_settings(SAGA_ALLOWED_HOSTS=["allowed.example"])
def test_a_url_outside_the_allowed_hosts_is_never_called(participants, worker):
    done = drive(worker, saga_create(two_steps(participants)))
    assert done.steps[0]["status"] == "failed"
    assert done.error["message"] == "URL host 127.0.0.1 is not in SAGA_ALLOWED_HOSTS"
    assert participants.received() == []


def test_one_sagas_bug_is_logged_and_rescheduled_and_the_worker_lives_on(
    participants, worker, caplog
):
    broken = definition_create([{"name": "bad", "action": {"method": "POST"}}], name="broken")
    bad = saga_create(broken)
    with caplog.at_level(logging.ERROR, logger="sagas.engine"):
        assert worker.tick() is True
    assert any(getattr(r, "saga_id", None) == str(bad.id) for r in caplog.records)
    rescheduled = saga_get(bad)
    assert rescheduled.lease_token is None
    assert rescheduled.next_attempt_at > timezone.now() + timedelta(seconds=2)
    good = saga_create(two_steps(participants))
    assert drive(worker, good).status == "completed"


def test_running_worker_wakes_on_notify_heartbeats_and_stops_cleanly(participants):
    worker = Worker(concurrency=2, poll_seconds=30, heartbeat_seconds=0.2)
    runner = in_thread(worker.run)
    wait_until(lambda: WorkerHeartbeat.objects.filter(worker_id=worker.worker_id).exists())
    time.sleep(0.3)  # the threads are idle, sleeping up to the 30 s poll

    started = time.monotonic()
    saga = saga_create(two_steps(participants))
    wake_workers()
    wait_until(lambda: saga_get(saga).status == "completed", timeout=5)
    assert time.monotonic() - started < 2  # woken, not polled

    # A retry due soon is picked up at its due time, not at the next poll.
    participants.script("POST", "/one", Reply(503), Reply(200, {}))
    retried = saga_create(two_steps(participants, delay_seconds=0.2, max_delay_seconds=1))
    wake_workers()
    wait_until(lambda: saga_get(retried).status == "completed", timeout=5)

    beat = WorkerHeartbeat.objects.get(worker_id=worker.worker_id)
    assert timezone.now() - beat.last_seen_at < timedelta(seconds=1)
    worker.stop()
    runner.join(timeout=5)
    assert not runner.is_alive()
    assert not WorkerHeartbeat.objects.filter(worker_id=worker.worker_id).exists()


def test_a_refused_connection_is_retryable_and_certain(worker):
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}"
    definition = definition_create(
        [step("one", call(f"{url}/one"), call(f"{url}/undo"), retry={"max_attempts": 2})]
    )
    done = drive(worker, saga_create(definition))
    assert done.steps[0]["attempts"] == 2
    assert done.error["message"].startswith("connection failed")
    # Nothing was sent (§4): the step did not happen, so its undo is not called.
    assert done.steps[0]["status"] == "failed"
    assert done.steps[0]["compensation_attempts"] == 0


@override_settings(SAGA_COMPENSATION_RETRY_ATTEMPTS=3)
def test_a_refused_compensation_is_retried_like_any_failed_one(participants, worker):
    undo = f"http://127.0.0.1:{free_port()}/undo"  # nothing listens there
    definition = definition_create(
        [
            step("one", call(participants.url("/one")), call(undo)),
            step("two", call(participants.url("/two"))),
        ]
    )
    participants.script("POST", "/two", Reply(422, {"error": "no"}))
    done = drive(worker, saga_create(definition))
    assert done.status == "failed"
    assert done.steps[0]["compensation_attempts"] == 3
    assert done.error["message"].startswith("connection failed")


def test_non_ascii_header_values_are_sent_and_bad_urls_fail_permanently(participants, worker):
    url = participants.url
    definition = definition_create(
        [
            step("one", call(url("/one"), headers={"X-Name": "${input.name}"})),
            step("two", call(url("/two with space")), call(url("/undo"))),
        ]
    )
    done = drive(worker, saga_create(definition, {"name": "Zoë"}))
    (one,) = participants.received("POST", "/one")
    assert one.header("X-Name").encode("latin-1").decode() == "Zoë"
    assert done.status == "compensated"
    assert done.steps[1]["status"] == "failed"
    assert "URL must not contain whitespace" in done.error["message"]
    assert participants.received("POST", "/two with space") == []


def test_a_finished_sagas_lock_goes_with_the_next_acquire_or_when_work_runs_out(participants):
    client = redis.Redis(host=settings.REDIS_HOST, port=settings.REDIS_PORT, db=settings.REDIS_DB)
    worker = Worker(concurrency=1, poll_seconds=0.05)
    first = saga_create(two_steps(participants))
    assert worker.tick() is True  # runs `first` to its end
    assert saga_get(first).status == "completed"
    assert client.exists(lock_key(first.id))  # held a moment longer: no round trip of its own

    second = saga_create(two_steps(participants))
    assert worker.tick() is True  # its acquire released the first lock in the same trip
    assert saga_get(second).status == "completed"
    assert not client.exists(lock_key(first.id))
    assert client.exists(lock_key(second.id))

    assert worker.tick() is False  # nothing due: released before the thread idles
    assert not client.exists(lock_key(second.id))
