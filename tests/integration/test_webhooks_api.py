"""The API side of webhooks (DESIGN §9.5): `notify` at registration, GET /api/events/ and
POST /api/events/{id}/redeliver/ (internal), the schema, the delivery metric."""

import uuid

import pytest
from django.utils import timezone

from sagas.models import WebhookEvent
from tests.api_builders import definition, post_definition, saga_row
from tests.webhooks import SECRET

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

HOOK_URL = "https://hooks.example.com/sagas"


@pytest.fixture(autouse=True)
def secret(settings):
    settings.SAGA_WEBHOOK_SECRET = SECRET
    return settings


def notify_errors(api, notify) -> dict:
    response = post_definition(api, definition(notify=notify))
    assert response.status_code == 400, response.content
    return response.json()["errors"]["notify"]


def test_notify_is_kept_normalised_in_the_definition(internal_api):
    events = ["saga.failed", "saga.completed", "saga.failed"]
    created = post_definition(internal_api, definition(notify={"url": HOOK_URL, "events": events}))
    assert created.status_code == 201
    assert created.json()["notify"] == {
        "url": HOOK_URL,
        "events": ["saga.completed", "saga.failed"],  # one order, each once
    }
    # The same content again is the same version.
    again = {"url": HOOK_URL, "events": ["saga.completed", "saga.failed"]}
    assert post_definition(internal_api, definition(notify=again)).status_code == 200

    every = post_definition(internal_api, definition(notify={"url": HOOK_URL})).json()
    assert every["version"] == 2
    assert len(every["notify"]["events"]) == 8
    plain = post_definition(internal_api, definition(name="plain")).json()
    assert plain["notify"] is None


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://0xa9fea9fe/",
        "ftp://hooks.example.com/",
        "https://user:pass@hooks.example.com/",
        "https://hooks.example.com/${input.x}",
    ],
)
def test_a_webhook_url_under_the_participant_host_rules(internal_api, url):
    errors = notify_errors(internal_api, {"url": url})
    assert list(errors) == ["url"]


def test_a_metadata_address_is_refused_at_registration(internal_api):
    errors = notify_errors(internal_api, {"url": "http://169.254.169.254/latest/meta-data/"})
    assert "link-local or metadata address" in errors["url"][0]


def test_a_webhook_host_outside_saga_allowed_hosts_is_refused(internal_api, settings):
    settings.SAGA_ALLOWED_HOSTS = ["*.internal"]
    errors = notify_errors(internal_api, {"url": HOOK_URL})
    assert "SAGA_ALLOWED_HOSTS" in errors["url"][0]


def test_unknown_event_types_and_bad_shapes_name_the_field(internal_api):
    errors = notify_errors(internal_api, {"url": HOOK_URL, "events": ["saga.exploded"]})
    assert "saga.exploded" in errors["events"][0]
    assert list(notify_errors(internal_api, {"url": HOOK_URL, "events": []})) == ["events"]
    assert list(notify_errors(internal_api, {"url": HOOK_URL, "events": "all"})) == ["events"]
    assert notify_errors(internal_api, {"url": HOOK_URL, "secret": "x"}) == {
        "secret": ["Unknown field."]
    }
    assert list(notify_errors(internal_api, {"events": ["saga.failed"]})) == ["url"]
    assert notify_errors(internal_api, "https://hooks.example.com/")


@pytest.mark.parametrize("value", ["", "your-webhook-secret", "dev-internal-key"])
def test_notify_is_refused_without_a_real_secret(internal_api, secret, value):
    secret.SAGA_WEBHOOK_SECRET = value
    [message] = notify_errors(internal_api, {"url": HOOK_URL})
    assert "SAGA_WEBHOOK_SECRET" in message
    # A definition without notify needs no secret.
    assert post_definition(internal_api, definition()).status_code == 201


def outbox_event(saga, status="dead", **fields) -> WebhookEvent:
    event_id = uuid.uuid4()
    now = timezone.now()
    values = {
        "event_id": event_id,
        "saga": saga,
        "type": "saga.completed",
        "url": HOOK_URL,
        "payload": {"id": str(event_id), "type": "saga.completed"},
        "status": status,
        "attempts": 20 if status == "dead" else 1,
        "next_attempt_at": now,
        "created_at": now,
    }
    return WebhookEvent.objects.create(**(values | fields))


def test_events_are_listed_newest_first_and_filtered(internal_api):
    post_definition(internal_api)
    first, second = saga_row(), saga_row()
    dead = outbox_event(first)
    delivered = outbox_event(first, "delivered")
    pending = outbox_event(second, "pending")

    def ids(**query):
        response = internal_api.get("/api/events/", query)
        assert response.status_code == 200
        return [event["id"] for event in response.json()["results"]]

    everything = [str(e.event_id) for e in (pending, delivered, dead)]
    assert ids() == everything
    assert ids(status="dead") == [str(dead.event_id)]
    assert ids(saga=str(first.id)) == everything[1:]
    assert ids(saga=str(second.id), status="dead") == []
    assert ids(status="", unknown="x") == everything  # empty = no filter; unknown ignored
    page = internal_api.get("/api/events/", {"page_size": 1}).json()
    assert (page["count"], len(page["results"])) == (3, 1)


@pytest.mark.parametrize(
    "query", [{"status": "lost"}, {"saga": "not-a-uuid"}, {"page": "10000000000000000000"}]
)
def test_bad_filters_are_4xx_json(internal_api, query):
    response = internal_api.get("/api/events/", query)
    assert response.status_code in (400, 404)
    assert response.json()["code"] in ("validation_error", "not_found")


def test_events_need_the_internal_key(client_api, anon_client):
    assert client_api.get("/api/events/").status_code == 403
    assert anon_client.get("/api/events/").status_code == 401
    target = f"/api/events/{uuid.uuid4()}/redeliver/"
    assert client_api.post(target).status_code == 403


def test_redeliver_resets_a_dead_or_delivered_event(internal_api):
    post_definition(internal_api)
    saga = saga_row()
    for status in ("dead", "delivered"):
        event = outbox_event(saga, status, last_error="HTTP 503", delivered_at=timezone.now())
        response = internal_api.post(f"/api/events/{event.event_id}/redeliver/")
        assert response.status_code == 202
        body = response.json()
        assert (body["id"], body["status"], body["attempts"]) == (str(event.event_id), "pending", 0)
        event.refresh_from_db()
        assert event.next_attempt_at <= timezone.now()
        assert event.delivered_at is None and event.lease_token is None

        conflict = internal_api.post(f"/api/events/{event.event_id}/redeliver/")
        assert conflict.status_code == 409
        assert conflict.json()["code"] == "conflict"

    missing = internal_api.post(f"/api/events/{uuid.uuid4()}/redeliver/")
    assert missing.status_code == 404
    assert internal_api.post("/api/events/nope/redeliver/").status_code == 404


def test_the_schema_documents_notify_and_the_events_endpoints(internal_api):
    schema = internal_api.get("/api/schema/?format=json").json()
    create = schema["paths"]["/api/saga-definitions/"]["post"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]
    with_hooks = next(e["value"] for e in examples.values() if "notify" in e["value"])
    assert internal_api.post("/api/saga-definitions/", with_hooks, format="json").status_code in (
        200,
        201,
    )
    listing = schema["paths"]["/api/events/"]["get"]
    assert {"status", "saga", "page"} <= {p["name"] for p in listing["parameters"]}
    assert listing["responses"]["200"]["content"]["application/json"]["examples"]
    redeliver = schema["paths"]["/api/events/{event_id}/redeliver/"]["post"]
    assert {"202", "404", "409"} <= set(redeliver["responses"])
    notify = schema["components"]["schemas"]["NotifyRequest"]["properties"]
    assert set(notify) == {"url", "events"}
