"""Real worker processes: concurrency, kill -9, a stale worker, Redis dying, SIGTERM."""

import collections
import signal
import subprocess
import sys
import time

import pytest
import redis

from sagas.engine.wakeup import wake_workers
from sagas.models import SagaAttempt, SagaInstance, WorkerHeartbeat
from tests.participants import Reply
from tests.saga_builders import attempts, call, definition_create, saga_create, saga_get, step
from tests.support import free_port, wait_until

# On SQLite too (`make run` runs its worker as a process beside the API): the claim, the
# lease and kill -9 recovery across processes on one database file.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def two_steps(participants, name="e2e", **retry):
    url = participants.url
    return definition_create(
        [
            step("one", call(url("/one")), call(url("/undo-one")), retry=retry or None),
            step("two", call(url("/two")), call(url("/undo-two")), retry=retry or None),
        ],
        name=name,
    )


def alive(count: int):
    wait_until(lambda: WorkerHeartbeat.objects.count() >= count, timeout=20)


def all_finished(sagas, status="completed"):
    ids = [s.id for s in sagas]
    return SagaInstance.objects.filter(id__in=ids, status=status).count() == len(ids)


def test_two_workers_on_200_sagas_never_call_an_action_twice(participants, workers):
    first, second = workers(concurrency=4), workers(concurrency=4)
    alive(2)
    definition = two_steps(participants)
    sagas = [saga_create(definition, {"n": n}) for n in range(200)]
    wake_workers()

    wait_until(lambda: all_finished(sagas), timeout=90, interval=0.2)

    counts = collections.Counter(r.header("Idempotency-Key") for r in participants.received())
    assert len(counts) == 400
    assert set(counts.values()) == {1}
    # Every call the participants saw is one attempt in the logs, and vice versa.
    assert SagaAttempt.objects.filter(saga__in=sagas, outcome="succeeded").count() == 400
    assert SagaAttempt.objects.filter(saga__in=sagas).count() == 400
    assert "SAGA call" in first.log() and "SAGA call" in second.log()  # both took part


def test_kill_9_mid_call_then_another_worker_resends_with_the_same_key(
    participants, workers, client_api
):
    participants.script("POST", "/one", Reply(200, {"late": True}, delay=30), Reply(200, {}))
    doomed = workers(concurrency=1, SAGA_LEASE_SECONDS=1)
    alive(1)
    # One attempt only: a crash is not an attempt (§6a), so the call is still sent again.
    saga = saga_create(two_steps(participants, max_attempts=1))
    wake_workers()
    wait_until(lambda: participants.received("POST", "/one"), timeout=20)
    in_flight = client_api.get(f"/api/sagas/{saga.id}/logs/").json()
    assert [(e["step"], e["attempt"], e["outcome"]) for e in in_flight] == [("one", 1, None)]

    doomed.kill()
    workers(concurrency=1, SAGA_LEASE_SECONDS=1)

    wait_until(lambda: saga_get(saga).status == "completed", timeout=30)
    first, again = participants.received("POST", "/one")
    assert first.header("Idempotency-Key") == again.header("Idempotency-Key")
    assert first.header("Idempotency-Key") == f"{saga.id}:one:action"
    logs = client_api.get(f"/api/sagas/{saga.id}/logs/").json()
    ones = [(e["attempt"], e["outcome"]) for e in logs if e["step"] == "one"]
    assert ones == [(1, "interrupted"), (1, "succeeded")]
    assert saga_get(saga).steps[0]["attempts"] == 1


def test_a_paused_worker_whose_lease_was_taken_over_cannot_write(participants, workers):
    participants.script("POST", "/one", Reply(200, {"by": "paused"}, delay=0.3), Reply(200, {}))
    paused = workers(concurrency=1, SAGA_LEASE_SECONDS=1)
    alive(1)
    saga = saga_create(two_steps(participants))
    wake_workers()
    wait_until(lambda: participants.received("POST", "/one"), timeout=20)
    paused.signal(signal.SIGSTOP)  # a long GC pause, a frozen VM…

    workers(concurrency=1, SAGA_LEASE_SECONDS=1)
    wait_until(lambda: saga_get(saga).status == "completed", timeout=30)
    recorded = [(a.step, a.attempt, a.outcome) for a in attempts(saga)]
    paused.signal(signal.SIGCONT)

    wait_until(lambda: "lease lost" in paused.log(), timeout=10)
    assert [(a.step, a.attempt, a.outcome) for a in attempts(saga)] == recorded
    assert saga_get(saga).steps[0]["response"] == {}


@pytest.mark.not_on_sqlite("Redis dying: without REDIS_HOST there is no Redis to lose")
def test_sagas_finish_when_redis_dies_during_execution(participants, workers, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        wait_until(lambda: _pings(client), timeout=10)
        participants.script("POST", "/one", Reply(200, {}, delay=0.05))
        workers(concurrency=4, REDIS_PORT=port, REDIS_DB=0)
        alive(1)
        definition = two_steps(participants)
        sagas = [saga_create(definition) for _ in range(40)]
        wake_workers()
        wait_until(lambda: client.keys("saga:lock:*"), timeout=20, interval=0.005)

        server.kill()  # Redis is gone mid-run
        server.wait(timeout=10)
        later = [saga_create(definition) for _ in range(10)]
        wake_workers()

        wait_until(lambda: all_finished(sagas + later), timeout=60, interval=0.2)
    finally:
        if server.poll() is None:
            server.kill()


def test_sigterm_finishes_the_call_in_flight_hands_back_and_exits_0(participants, workers):
    participants.script("POST", "/one", Reply(200, {"done": 1}, delay=1.0))
    worker = workers(concurrency=2)
    alive(1)
    saga = saga_create(two_steps(participants))
    wake_workers()
    wait_until(lambda: participants.received("POST", "/one"), timeout=20)

    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.process.wait(timeout=15) == 0
    assert time.monotonic() - started < 10

    handed_back = saga_get(saga)
    assert handed_back.lease_token is None and handed_back.status == "running"
    assert handed_back.steps[0]["status"] == "succeeded"  # its call finished and was recorded
    assert participants.received("POST", "/two") == []
    assert not WorkerHeartbeat.objects.exists()


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


def test_the_worker_refuses_to_start_without_production_secrets():
    from tests.e2e.workers import ROOT, worker_env

    env = worker_env(
        DEBUG="False",
        SECRET_KEY="your-super-secret-key-change-in-production",
        SAGA_API_KEY="your-saga-api-key",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "run_saga_worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr and "SAGA_API_KEY" in result.stderr
