"""Durability and fencing: what is committed when, and who may write."""

import logging
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from sagas.engine.locks import SagaLocks, lock_key
from sagas.engine.wakeup import wake_workers
from sagas.engine.worker import Worker
from sagas.models import SagaAttempt, SagaInstance, WorkerHeartbeat
from sagas.redis_client import redis_client_for
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
from tests.support import free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def two_steps(participants, **retry):
    url = participants.url
    return definition_create(
        [
            step("one", call(url("/one")), call(url("/undo-one")), retry=retry or None),
            step("two", call(url("/two")), call(url("/undo-two")), retry=retry or None),
        ]
    )


def db_observer(saga_id):
    """What another database session sees at the moment a participant is called: the
    participant server's thread reads through its own connection."""
    caller = connections["default"]  # the test thread's, which drives the worker
    seen = []

    def observe(request):
        try:
            rows = list(
                SagaAttempt.objects.filter(saga_id=saga_id)
                .order_by("id")
                .values_list("step", "attempt", "outcome")
            )
            steps = SagaInstance.objects.values_list("steps", flat=True).get(id=saga_id)
            open_transactions = transactions_open_elsewhere(caller)
        finally:
            connection.close()  # this thread's
        seen.append(
            {"path": request.path, "open_tx": open_transactions, "rows": rows, "steps": steps}
        )
        return Reply(200, {"ok": True})

    return seen, observe


def transactions_open_elsewhere(caller) -> int:
    """Sessions other than this thread's with a transaction open. PostgreSQL lists every
    session; SQLite has no such view: the one that could hold one is the caller's."""
    if connection.vendor != "postgresql":
        return int(caller.in_atomic_block or caller.connection.in_transaction)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_no_call_inside_a_transaction_and_each_transition_committed_first(participants, worker):
    definition = two_steps(participants)
    saga = saga_create(definition)
    seen, observe = db_observer(saga.id)
    participants.script("POST", "/one", observe)
    participants.script("POST", "/two", observe)

    assert drive(worker, saga).status == "completed"

    first, second = seen
    assert first["open_tx"] == 0 and second["open_tx"] == 0
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
    stale_reply = Held(Reply(200, {"by": "stale"}))
    participants.script("POST", "/one", stale_reply)
    saga = saga_create(two_steps(participants))
    runner = in_thread(stale.tick)
    wait_until(lambda: participants.received("POST", "/one"))

    # The stale worker stalls past its lease; another worker takes the saga over.
    past = timezone.now() - timedelta(seconds=1)
    SagaInstance.objects.filter(id=saga.id).update(lease_expires_at=past, next_attempt_at=past)
    participants.script("POST", "/one", Reply(200, {"by": "fresh"}))
    drive(fresh, saga)
    stale_reply.release()  # the stale worker's call returns only now
    runner.join(timeout=5)
    assert not runner.is_alive()

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


@pytest.mark.not_on_sqlite(
    "Redis locks: without REDIS_HOST the lease alone fences (test_a_worker_whose_lease_was_taken_…)"
)
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


@pytest.mark.not_on_sqlite(
    "LISTEN/NOTIFY: on SQLite idle workers poll (test_an_idle_worker_picks_up_new_work_by_polling)"
)
def test_an_idle_worker_is_woken_by_notify_not_by_the_poll(participants):
    worker = Worker(concurrency=2, poll_seconds=30)
    runner = in_thread(worker.run)
    try:
        wait_until(lambda: WorkerHeartbeat.objects.filter(worker_id=worker.worker_id).exists())
        time.sleep(0.3)  # the threads are idle, sleeping up to the 30 s poll

        started = time.monotonic()
        saga = saga_create(two_steps(participants))
        wake_workers()
        wait_until(lambda: saga_get(saga).status == "completed", timeout=5)
        assert time.monotonic() - started < 2  # woken, not polled
    finally:
        worker.stop()
        runner.join(timeout=5)


def test_an_idle_worker_picks_up_new_work_by_polling(participants):
    """SQLite's wake-up (no NOTIFY there, `wake_workers()` does nothing): the poll."""
    worker = Worker(concurrency=2, poll_seconds=0.2)
    runner = in_thread(worker.run)
    try:
        wait_until(lambda: WorkerHeartbeat.objects.filter(worker_id=worker.worker_id).exists())
        time.sleep(0.3)  # the threads are idle

        saga = saga_create(two_steps(participants))  # nobody is told
        wait_until(lambda: saga_get(saga).status == "completed", timeout=2)
    finally:
        worker.stop()
        runner.join(timeout=5)


def test_a_running_worker_takes_a_retry_at_its_due_time_heartbeats_and_stops_cleanly(
    participants,
):
    participants.script("POST", "/one", Reply(503), Reply(200, {}))
    retried = saga_create(two_steps(participants, delay_seconds=0.2, max_delay_seconds=1))
    worker = Worker(concurrency=2, poll_seconds=30, heartbeat_seconds=0.2)
    runner = in_thread(worker.run)

    # The first call fails; the retry is due 0.2 s later and taken then, not at the 30 s poll.
    wait_until(lambda: saga_get(retried).status == "completed", timeout=5)
    assert len(participants.received("POST", "/one")) == 2

    wait_until(lambda: WorkerHeartbeat.objects.filter(worker_id=worker.worker_id).exists())
    time.sleep(0.3)  # a heartbeat or more since
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


@pytest.mark.not_on_sqlite("Redis locks: without REDIS_HOST there is no lock to hold")
def test_a_sagas_lock_is_held_with_its_token_while_it_runs_and_released_after(participants):
    client = redis.Redis(host=settings.REDIS_HOST, port=settings.REDIS_PORT, db=settings.REDIS_DB)
    seen = []

    def observe(request):
        saga_id = request.header("Idempotency-Key").split(":")[0]
        try:
            lease = SagaInstance.objects.values_list("lease_token", flat=True).get(id=saga_id)
        finally:
            connection.close()  # this participant thread's own connection
        key = lock_key(saga_id)
        seen.append((lease, client.get(key), client.pttl(key)))
        return Reply(200, {})

    participants.script("POST", "/one", observe)
    worker = Worker(concurrency=1, poll_seconds=0.05)
    saga = saga_create(two_steps(participants))
    assert worker.tick() is True
    done = saga_get(saga)
    assert done.status == "completed"
    ((lease, value, ttl_ms),) = seen
    assert value == str(lease).encode()  # valued by the lease token in force
    assert 0 < ttl_ms <= worker.lease_seconds * 1000
    assert not client.exists(lock_key(saga.id))  # released when the saga was handed back
