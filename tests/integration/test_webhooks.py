"""Lifecycle webhooks (DESIGN §9.5) driven a tick at a time: the worker runs the saga, the
delivery loop posts its events to a real receiver server; on PostgreSQL and on SQLite."""

import logging
import time
import uuid

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from sagas.engine import control
from sagas.engine.delivery import Delivery
from sagas.engine.executor import PlanCache
from sagas.engine.store import LeaseLost, saga_claim, transition_record
from sagas.models import SagaEvent, SagaInstance, WebhookEvent
from tests.participants import ParticipantServer, Reply
from tests.saga_builders import drive, saga_create
from tests.support import free_port
from tests.webhooks import HOOK, SECRET, hooks, notified_definition, readme_verify, types_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]

COMPLETED = ["saga.started", "step.succeeded", "step.succeeded", "saga.completed"]


@pytest.fixture(autouse=True)
def webhook_settings(settings):
    settings.SAGA_WEBHOOK_SECRET = SECRET
    settings.SAGA_WEBHOOK_RETRY_DELAY = 0
    settings.SAGA_WEBHOOK_MAX_ATTEMPTS = 20
    return settings


@pytest.fixture
def delivery():
    return Delivery(lease_seconds=10, poll_seconds=0.05)


def deliver_all(delivery: Delivery, limit: int = 100) -> int:
    """Tick the delivery loop until nothing is due; how many deliveries it made."""
    made = 0
    while made < limit and delivery.tick():
        made += 1
    return made


def start(client, definition: str = "notified") -> str:
    response = client.post("/api/sagas/", {"definition": definition}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_a_sagas_events_arrive_in_order_once_each_signed(
    participants, receiver, worker, delivery, client_api
):
    notified_definition(participants, receiver.url(HOOK))
    saga_id = start(client_api)  # the API's start writes saga.started with the saga
    drive(worker, SagaInstance.objects.get(id=saga_id))

    assert deliver_all(delivery) == 4
    assert deliver_all(delivery) == 0
    received = hooks(receiver)
    assert types_of(received) == COMPLETED
    verify = readme_verify()
    for request in received:
        body = request.body
        assert request.header("X-Saga-Event-Id") == body["id"]
        assert request.header("Content-Type") == "application/json"
        assert verify(SECRET, request.header("X-Saga-Signature"), request.raw)
        assert not verify("another-secret", request.header("X-Saga-Signature"), request.raw)
        assert list(body) == [
            "id",
            "type",
            "saga_id",
            "definition",
            "definition_version",
            "status",
            "at",
            "data",
        ]
        assert (body["saga_id"], body["definition"], body["definition_version"]) == (
            saga_id,
            "notified",
            1,
        )
    assert len({r.body["id"] for r in received}) == 4
    assert [r.body["status"] for r in received] == ["pending", "running", "completed", "completed"]
    assert [r.body["data"].get("step") for r in received[1:3]] == ["reserve", "charge"]
    assert received[1].body["data"] == {
        "step": "reserve",
        "phase": "action",
        "run": 1,
        "attempt": 1,
        "status_code": 200,
    }
    assert received[3].body["data"] == {"error": None}
    assert received[0].body["data"] == {"actor": "client"}
    statuses = set(WebhookEvent.objects.values_list("status", "attempts"))
    assert statuses == {("delivered", 1)}


def test_only_the_asked_types_are_written_and_a_compensation_reports_its_error(
    participants, receiver, worker, delivery
):
    participants.script("POST", "/charge", Reply(422, {"error": "card declined"}))
    definition = notified_definition(
        participants, receiver.url(HOOK), events=["step.failed", "saga.compensated"]
    )
    saga = saga_create(definition)
    drive(worker, saga)

    deliver_all(delivery)
    received = hooks(receiver)
    assert types_of(received) == ["step.failed", "saga.compensated"]
    failed, compensated = (r.body for r in received)
    assert failed["status"] == "compensating"
    assert failed["data"]["step"] == "charge"
    assert failed["data"]["error"] == "HTTP 422: card declined"
    assert compensated["data"]["error"] == {
        "code": "step_failed",
        "step": "charge",
        "message": "HTTP 422: card declined",
    }


def test_changes_made_through_the_api_write_their_events_too(
    participants, receiver, delivery, client_api
):
    definition = notified_definition(participants, receiver.url(HOOK))
    pending = saga_create(definition)
    control.saga_cancel(saga_id=pending.id, actor=control.Actor("client", "abcd1234"))
    other = saga_create(definition)
    control.saga_pause(saga_id=other.id, actor=control.Actor("internal"), reason="look first")

    deliver_all(delivery)
    by_saga = {}
    for request in hooks(receiver):
        by_saga.setdefault(request.body["saga_id"], []).append(request.body)
    [cancelled] = by_saga[str(pending.id)]
    assert (cancelled["type"], cancelled["status"]) == ("saga.cancelled", "cancelled")
    assert cancelled["data"]["error"]["code"] == "cancelled"
    [paused] = by_saga[str(other.id)]
    assert (paused["type"], paused["status"]) == ("saga.paused", "paused")
    assert paused["data"]["actor"] == "internal"
    assert paused["data"]["reason"] == "look first"


def test_a_receiver_failing_three_times_gets_it_on_the_fourth_try(
    participants, receiver, worker, delivery, webhook_settings, caplog
):
    webhook_settings.SAGA_WEBHOOK_RETRY_DELAY = 0.05
    failing = Reply(503, {"error": "busy"})
    receiver.script("POST", HOOK, failing, failing, failing, Reply(200, {}))
    saga = saga_create(notified_definition(participants, receiver.url(HOOK), ["saga.completed"]))
    drive(worker, saga)

    before = {outcome: deliveries(outcome) for outcome in ("retry", "delivered")}
    with caplog.at_level(logging.INFO, logger="sagas.engine"):
        deadline = time.monotonic() + 10
        while WebhookEvent.objects.get().status != "delivered" and time.monotonic() < deadline:
            deliver_all(delivery)
    received = hooks(receiver)
    assert len(received) == 4
    assert len({r.header("X-Saga-Event-Id") for r in received}) == 1
    gaps = [later.at - earlier.at for earlier, later in zip(received, received[1:], strict=False)]
    # 0.05 s, then 0.1 s, then 0.2 s: doubling.
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2
    event = WebhookEvent.objects.get()
    assert (event.status, event.attempts, event.last_status_code) == ("delivered", 4, 200)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SAGA webhook")]
    assert [line.split()[-2] for line in lines] == ["retry", "retry", "retry", "delivered"]
    assert all(f"saga.completed notified {saga.id}" in line for line in lines)
    assert deliveries("retry") - before["retry"] == 3
    assert deliveries("delivered") - before["delivered"] == 1


def deliveries(outcome: str) -> float:
    """This process's saga_webhook_deliveries_total{outcome} (no multiprocess directory in
    these tests; the e2e tests read the shared files)."""
    value = REGISTRY.get_sample_value("saga_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


def test_a_later_event_waits_for_the_earlier_one_but_not_for_a_dead_one(
    participants, receiver, worker, delivery, webhook_settings, client_api
):
    webhook_settings.SAGA_WEBHOOK_MAX_ATTEMPTS = 2
    webhook_settings.SAGA_WEBHOOK_RETRY_DELAY = 1.0  # ample: the next tick comes sooner

    def refuse_the_start(request):
        return Reply(500) if request.body["type"] == "saga.started" else Reply(204)

    receiver.script("POST", HOOK, refuse_the_start)
    notified_definition(participants, receiver.url(HOOK))
    saga = SagaInstance.objects.get(id=start(client_api))
    drive(worker, saga)

    assert delivery.tick()  # the first event: refused, due again in 1 s
    assert not delivery.tick()  # the later ones wait behind it
    assert types_of(hooks(receiver)) == ["saga.started"]
    time.sleep(1.05)
    deliver_all(delivery)  # refused again: dead, and the later ones go on, in order

    expected = ["saga.started", "saga.started", "step.succeeded", "step.succeeded"]
    assert types_of(hooks(receiver)) == [*expected, "saga.completed"]
    events = WebhookEvent.objects.filter(saga_id=saga.id).order_by("id")
    assert [(e.type, e.status) for e in events] == [
        ("saga.started", "dead"),
        ("step.succeeded", "delivered"),
        ("step.succeeded", "delivered"),
        ("saga.completed", "delivered"),
    ]


def test_an_unreachable_receiver_leaves_the_event_dead_listed_and_redeliverable(
    participants, worker, delivery, webhook_settings, internal_api
):
    webhook_settings.SAGA_WEBHOOK_MAX_ATTEMPTS = 3
    port = free_port()  # nothing listens: every delivery is refused
    url = f"http://127.0.0.1:{port}{HOOK}"
    saga = saga_create(notified_definition(participants, url, ["saga.completed"]))
    drive(worker, saga)

    assert deliver_all(delivery) == 3
    dead = internal_api.get("/api/events/", {"status": "dead"}).json()
    assert dead["count"] == 1
    [event] = dead["results"]
    assert (event["type"], event["saga_id"]) == ("saga.completed", str(saga.id))
    assert event["attempts"] == 3
    assert event["last_error"].startswith("connection failed")
    assert event["payload"]["id"] == event["id"]
    assert internal_api.get("/api/events/", {"status": "pending"}).json()["count"] == 0

    receiver = ParticipantServer(port=port)  # the receiver is back
    try:
        answer = internal_api.post(f"/api/events/{event['id']}/redeliver/")
        assert answer.status_code == 202
        assert (answer.json()["status"], answer.json()["attempts"]) == ("pending", 0)
        again = internal_api.post(f"/api/events/{event['id']}/redeliver/")
        assert again.status_code == 409
        assert deliver_all(delivery) == 1
    finally:
        receiver.close()
    [request] = hooks(receiver)
    assert request.body == event["payload"]
    listed = internal_api.get("/api/events/", {"saga": str(saga.id)}).json()["results"]
    assert [(e["status"], e["attempts"]) for e in listed] == [("delivered", 1)]


def test_nothing_is_sent_while_the_secret_is_unset(
    participants, receiver, worker, delivery, webhook_settings
):
    saga = saga_create(notified_definition(participants, receiver.url(HOOK)))
    drive(worker, saga)
    webhook_settings.SAGA_WEBHOOK_SECRET = ""

    assert deliver_all(delivery) == 0
    assert hooks(receiver) == []
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"pending"}


def test_no_event_without_its_change(participants, receiver):
    """The outbox row is written by the fenced write of the change: a write that misses
    (another worker holds the lease) leaves neither the change nor its event."""
    definition = notified_definition(participants, receiver.url(HOOK))
    saga = saga_create(definition)
    claimed = saga_claim(owner="test", now=timezone.now(), lease_seconds=30)
    plan = PlanCache().get(definition.id)
    state = claimed.state.copy()
    state.record("step_succeeded", timezone.now(), "reserve", phase="action")
    taken = SagaInstance.objects.filter(id=saga.id)
    taken.update(lease_token=uuid.uuid4())  # another worker took the saga over

    def record():
        transition_record(
            lease=claimed.lease,
            before=state.status,
            state=state,
            now=timezone.now(),
            lease_seconds=30,
            plan=plan,
        )

    with pytest.raises(LeaseLost):
        record()
    assert WebhookEvent.objects.count() == 0
    assert not SagaEvent.objects.filter(saga_id=saga.id).exists()

    taken.update(lease_token=claimed.lease.token)
    record()
    assert list(WebhookEvent.objects.values_list("type", flat=True)) == ["step.succeeded"]
    assert SagaEvent.objects.get(saga_id=saga.id).event == "step_succeeded"
