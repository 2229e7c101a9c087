"""A parallel group (DESIGN §9.3) across real worker processes: kill -9 of the worker
while every member's call is in flight; after the restart each member's call is sent
again with its own Idempotency-Key, none is skipped, and the saga completes."""

import pytest

from sagas.engine.wakeup import wake_workers
from sagas.models import WorkerHeartbeat
from tests.participants import Reply
from tests.saga_builders import call, definition_create, saga_create, saga_get, step
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.sqlite]

MEMBERS = ("stock", "card", "points")


def test_kill_9_while_a_group_is_in_flight_resends_every_member_with_its_own_key(
    participants, workers, client_api
):
    url = participants.url
    for name in MEMBERS:  # the first call never answers in time: the worker dies during it
        participants.script("POST", f"/{name}", Reply(200, {"late": True}, delay=30), Reply(201))
    members = [step(name, call(url(f"/{name}")), call(url(f"/{name}/cancel"))) for name in MEMBERS]
    definition = definition_create(
        [{"name": "prepare", "parallel": members}, step("ship", call(url("/ship")))],
        name="grouped",
    )
    doomed = workers(concurrency=1, SAGA_LEASE_SECONDS=1)
    wait_until(lambda: WorkerHeartbeat.objects.count() >= 1, timeout=20)
    saga = saga_create(definition, {})
    wake_workers()
    wait_until(lambda: all(participants.received("POST", f"/{n}") for n in MEMBERS), timeout=20)
    in_flight = client_api.get(f"/api/sagas/{saga.id}/logs/").json()
    assert sorted((e["step"], e["outcome"]) for e in in_flight) == [
        (name, None) for name in sorted(MEMBERS)
    ]

    doomed.kill()
    workers(concurrency=1, SAGA_LEASE_SECONDS=1)

    wait_until(lambda: saga_get(saga).status == "completed", timeout=30)
    for name in MEMBERS:
        first, again = participants.received("POST", f"/{name}")
        assert first.header("Idempotency-Key") == again.header("Idempotency-Key")
        assert first.header("Idempotency-Key") == f"{saga.id}:{name}:action"
    logs = client_api.get(f"/api/sagas/{saga.id}/logs/").json()
    for name in MEMBERS:
        outcomes = [(e["attempt"], e["outcome"]) for e in logs if e["step"] == name]
        assert outcomes == [(1, "interrupted"), (1, "succeeded")], name
    done = saga_get(saga)
    assert [(s["name"], s.get("group"), s["attempts"]) for s in done.steps] == [
        ("stock", "prepare", 1),
        ("card", "prepare", 1),
        ("points", "prepare", 1),
        ("ship", None, 1),
    ]
    assert len(participants.received("POST", "/ship")) == 1
