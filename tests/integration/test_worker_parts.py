"""The worker's parts, each on its own: the per-saga lock, the lease keeper, the heartbeat."""

import time
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from sagas.engine.heartbeat import Heartbeat, workers_alive
from sagas.engine.lease_keeper import LeaseKeeper
from sagas.engine.locks import SagaLocks, lock_key, saga_locks_from_settings
from sagas.engine.store import saga_claim
from sagas.models import SagaInstance, WorkerHeartbeat
from sagas.redis_client import redis_breaker, redis_client, redis_client_for
from tests.builders import heartbeat_create
from tests.saga_builders import call, definition_create, in_thread, saga_create, step

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client():
    client = redis.Redis(host=settings.REDIS_HOST, port=settings.REDIS_PORT, db=settings.REDIS_DB)
    yield client
    client.close()


def claimed_saga(lease_seconds=30):
    definition = definition_create([step("one", call("http://127.0.0.1:9/one"))])
    saga = saga_create(definition)
    claimed = saga_claim(owner="me", now=timezone.now(), lease_seconds=lease_seconds)
    assert claimed.lease.saga_id == saga.id
    return claimed.lease


def test_the_keeper_renews_held_leases_and_locks_from_another_thread(client):
    lease = claimed_saga()
    locks = SagaLocks(redis_client(), 30)
    lock = locks.acquire(lease.saga_id, lease.token)
    keeper = LeaseKeeper(lease_seconds=30)
    key = lock_key(lease.saga_id)
    with keeper.hold(lease, lock):
        client.pexpire(key, 500)
        soon = timezone.now() + timedelta(seconds=1)
        SagaInstance.objects.filter(id=lease.saga_id).update(lease_expires_at=soon)
        in_thread(keeper.renew).join(timeout=5)  # the keeper runs in the worker's main thread
        assert client.pttl(key) > 25_000
        renewed = SagaInstance.objects.get(id=lease.saga_id).lease_expires_at
        assert renewed > timezone.now() + timedelta(seconds=25)
    client.pexpire(key, 500)
    keeper.renew()  # no longer held: not renewed
    assert client.pttl(key) <= 500
    assert not lease.lost


@pytest.mark.sqlite
def test_the_keeper_marks_a_lease_taken_over_as_lost():
    lease = claimed_saga()
    keeper = LeaseKeeper(lease_seconds=30)
    SagaInstance.objects.filter(id=lease.saga_id).update(lease_token=uuid.uuid4())
    with keeper.hold(lease, SagaLocks(None, 30).acquire(lease.saga_id, lease.token)):
        keeper.renew()
    assert lease.lost


def test_a_lock_is_valued_by_the_token_and_only_its_holder_renews_or_releases_it(client):
    locks = SagaLocks(redis_client(), 30)
    saga_id, token = uuid.uuid4(), uuid.uuid4()
    held = locks.acquire(saga_id, token)
    assert client.get(lock_key(saga_id)) == str(token).encode()
    assert locks.acquire(saga_id, uuid.uuid4()) is None  # held elsewhere

    client.set(lock_key(saga_id), "someone-else", px=500)  # ran out and was taken
    held.renew()
    held.release()
    assert client.get(lock_key(saga_id)) == b"someone-else"
    assert client.pttl(lock_key(saga_id)) <= 500
    assert not locks.breaker.down  # a lost lock is no outage


def test_locks_skip_an_unreachable_redis_while_the_breaker_is_open():
    locks = SagaLocks(redis_client_for(host="127.0.0.1", port=1, timeout=0.2), 30)
    first = locks.acquire(uuid.uuid4(), uuid.uuid4())
    assert first is not None and first.lock is None  # run on the database lease alone
    assert locks.breaker.down
    started = time.monotonic()
    second = locks.acquire(uuid.uuid4(), uuid.uuid4())
    second.renew()
    second.release()
    assert second.lock is None and time.monotonic() - started < 0.05  # not even tried


def test_the_workers_locks_use_the_processs_one_redis_breaker():
    assert saga_locks_from_settings(30).breaker is redis_breaker()


@pytest.mark.sqlite
@override_settings(SAGA_WORKER_HEARTBEAT_SECONDS=10)
def test_a_worker_is_alive_while_its_heartbeat_is_younger_than_three_intervals():
    heartbeat_create("fresh", seconds_ago=1)
    heartbeat_create("late", seconds_ago=29)
    heartbeat_create("dead", seconds_ago=31)
    assert {h.worker_id for h in workers_alive()} == {"fresh", "late"}
    assert workers_alive(hostname="elsewhere").count() == 0
    assert workers_alive(hostname="test").count() == 2


@pytest.mark.sqlite
def test_a_heartbeat_row_is_created_then_beaten_then_removed():
    heartbeat = Heartbeat("w-1")
    heartbeat.beat()
    first = WorkerHeartbeat.objects.get(worker_id="w-1").last_seen_at
    heartbeat.beat()
    beat = WorkerHeartbeat.objects.get(worker_id="w-1")
    assert beat.last_seen_at > first and beat.started_at == heartbeat.started_at
    heartbeat.remove()
    assert not WorkerHeartbeat.objects.filter(worker_id="w-1").exists()
