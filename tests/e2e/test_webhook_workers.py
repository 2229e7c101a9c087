"""Webhooks across real processes: definitions and starts through Gunicorn, delivery by
saga worker processes to a receiver server in the test, kill -9 between the change and its
delivery, and the delivery counter in the Prometheus multiprocess files."""

import collections
import functools

import pytest
import requests
from django.conf import settings

from sagas.engine.wakeup import wake_workers
from sagas.models import SagaInstance, WebhookEvent
from tests.e2e.test_metrics_multiprocess import samples
from tests.gunicorn_process import gunicorn_start
from tests.participants import Held, Reply
from tests.saga_builders import reserve_and_charge, saga_create
from tests.support import wait_until
from tests.webhooks import HOOK, SECRET, hooks, notified_definition, readme_verify, types_of

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SAGAS = 6
COMPLETED = ["saga.started", "step.succeeded", "step.succeeded", "saga.completed"]


@pytest.fixture
def hook_workers(workers):
    """Worker processes that may sign webhooks."""
    return functools.partial(workers, SAGA_WEBHOOK_SECRET=SECRET)


def post(server, path: str, body: dict, key: str) -> requests.Response:
    headers = {"X-API-Key": key}
    return requests.post(server.base_url + path, json=body, headers=headers, timeout=30)


def delivered_count() -> int:
    return WebhookEvent.objects.filter(status="delivered").count()


def test_two_workers_deliver_each_sagas_events_in_order_once_signed_and_counted(
    tmp_path, participants, receiver, hook_workers
):
    metrics_dir = str(tmp_path / "prometheus")
    env = {"SAGA_WEBHOOK_SECRET": SECRET, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    server = gunicorn_start(tmp_path, workers=2, **env)
    try:
        definition = reserve_and_charge(participants, name="hooked", max_attempts=1)
        definition["notify"] = {"url": receiver.url(HOOK)}
        created = post(server, "/api/saga-definitions/", definition, settings.INTERNAL_API_KEY)
        assert created.status_code == 201, created.text
        hook_workers(concurrency=2, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
        hook_workers(concurrency=2, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
        ids = []
        for n in range(SAGAS):
            body = {"definition": "hooked", "input": {"n": n}}
            started = post(server, "/api/sagas/", body, settings.SAGA_API_KEY)
            assert started.status_code == 202, started.text
            ids.append(started.json()["id"])

        wait_until(lambda: delivered_count() == 4 * SAGAS, timeout=60, interval=0.1)
        received = hooks(receiver)
        ids_seen = collections.Counter(r.header("X-Saga-Event-Id") for r in received)
        assert len(ids_seen) == 4 * SAGAS and set(ids_seen.values()) == {1}  # each once
        verify = readme_verify()
        assert all(verify(SECRET, r.header("X-Saga-Signature"), r.raw) for r in received)
        for saga_id in ids:
            mine = [r for r in received if r.body["saga_id"] == saga_id]
            assert types_of(mine) == COMPLETED, saga_id
        assert all(SagaInstance.objects.get(id=i).status == "completed" for i in ids)

        scraped = samples(server.get("/metrics", **{"X-API-Key": settings.INTERNAL_API_KEY}).text)
        key = ("saga_webhook_deliveries_total", (("outcome", "delivered"),))
        assert scraped[key] == 4 * SAGAS  # summed over both worker processes' files
    finally:
        server.stop()


# On SQLite too (`make run` runs its worker as a process beside the API).
@pytest.mark.sqlite
def test_kill_9_between_the_change_and_its_delivery_still_delivers(
    participants, receiver, hook_workers
):
    held = Held(Reply(200, {}), timeout=30)
    receiver.script("POST", HOOK, held, Reply(200, {}))
    definition = notified_definition(participants, receiver.url(HOOK), ["saga.completed"])
    doomed = hook_workers(concurrency=1, SAGA_LEASE_SECONDS=2)
    saga = saga_create(definition)
    wake_workers()
    # The saga completed and its event is being delivered: the change is committed, the
    # delivery not yet recorded.
    wait_until(lambda: hooks(receiver), timeout=30)
    assert SagaInstance.objects.get(id=saga.id).status == "completed"
    doomed.kill()
    held.release()
    assert WebhookEvent.objects.get().status == "pending"

    hook_workers(concurrency=1, SAGA_LEASE_SECONDS=2)
    wait_until(lambda: delivered_count() == 1, timeout=30, interval=0.1)
    first, again = hooks(receiver)  # at least once: the cut delivery, then the next worker's
    assert first.header("X-Saga-Event-Id") == again.header("X-Saga-Event-Id")
    assert first.raw == again.raw
    event = WebhookEvent.objects.get()
    assert (event.attempts, event.last_status_code) == (2, 200)
