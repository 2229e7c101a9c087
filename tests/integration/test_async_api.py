"""The API side of asynchronous steps (DESIGN §9.4): the `async` option at registration
(400 naming the field, kept in the normalised definition), the callback endpoint in the
OpenAPI schema, its per-IP rate limit, and the callback token never following a redirect
to another origin."""

import pytest
from django.test import Client, override_settings

from sagas.engine.executor import PlanCache
from sagas.models import SagaDefinition
from tests.participants import Reply
from tests.saga_builders import call, definition_create, drive, saga_create, step
from tests.security_helpers import unique_ip

pytestmark = pytest.mark.sqlite


def definition(action_extra=None, compensation_extra=None, name="async-def") -> dict:
    action = {"method": "POST", "url": "http://127.0.0.1:9/pick"} | (action_extra or {})
    compensation = {"method": "POST", "url": "http://127.0.0.1:9/undo"}
    return {
        "name": name,
        "steps": [
            {
                "name": "pick",
                "action": action,
                "compensation": compensation | (compensation_extra or {}),
            }
        ],
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout_seconds": 0}, "Ensure this value is greater than or equal to 1."),
        ({"timeout_seconds": 604801}, "Ensure this value is less than or equal to 604800."),
        ({"timeout_seconds": "60"}, "Must be a number."),
        ({}, "This field is required."),
    ],
)
def test_async_timeouts_out_of_range_are_refused_naming_the_field(internal_api, options, message):
    answer = internal_api.post(
        "/api/saga-definitions/", definition({"async": options}), format="json"
    )

    assert answer.status_code == 400
    field = answer.json()["errors"]["steps"]["0"]["action"]["async"]["timeout_seconds"]
    assert field == [message]


@pytest.mark.django_db
def test_async_is_an_option_of_actions_only_and_takes_no_unknown_fields(internal_api):
    on_compensation = definition(compensation_extra={"async": {"timeout_seconds": 5}})
    unknown = definition({"async": {"timeout_seconds": 5, "poll": True}})
    not_object = definition({"async": 60})

    refused = [
        internal_api.post("/api/saga-definitions/", body, format="json")
        for body in (on_compensation, unknown, not_object)
    ]

    assert [answer.status_code for answer in refused] == [400, 400, 400]
    errors = [answer.json()["errors"]["steps"]["0"] for answer in refused]
    assert errors[0]["compensation"] == {"async": ["Unknown field."]}
    assert errors[1]["action"]["async"] == {"poll": ["Unknown field."]}
    assert "async" in errors[2]["action"]


@pytest.mark.django_db
def test_async_is_kept_in_the_normalised_definition_and_in_the_plan(internal_api):
    created = internal_api.post(
        "/api/saga-definitions/", definition({"async": {"timeout_seconds": 90}}), format="json"
    )
    plain = internal_api.post("/api/saga-definitions/", definition(name="plain"), format="json")

    assert created.status_code == 201, created.content
    stored = SagaDefinition.objects.get(name="async-def")
    assert stored.steps[0]["action"]["async"] == {"timeout_seconds": 90.0}
    assert "async" not in SagaDefinition.objects.get(name="plain").steps[0]["action"]
    assert plain.json()["steps"][0]["action"].keys() == {
        "method",
        "url",
        "headers",
        "body",
        "timeout_seconds",
    }
    assert PlanCache().get(stored.id).steps[0].async_timeout == 90.0
    again = internal_api.post(
        "/api/saga-definitions/", definition({"async": {"timeout_seconds": 90}}), format="json"
    )
    assert again.status_code == 200  # identical: no new version


@pytest.fixture
def schema(anon_client):
    return anon_client.get("/api/schema/?format=json").json()


def test_the_callback_endpoint_is_documented_open_with_its_answers_and_examples(schema):
    callback = schema["paths"]["/api/sagas/{saga_id}/steps/{step}/callback/"]["post"]

    assert callback.get("security", []) in ([], [{}])  # no API key: the token instead
    assert {"200", "202", "400", "403", "404", "409"} <= set(callback["responses"])
    headers = [p["name"] for p in callback["parameters"] if p["in"] == "header"]
    assert headers == ["X-Saga-Callback-Token"]
    examples = callback["requestBody"]["content"]["application/json"]["examples"]
    assert {example["value"]["outcome"] for example in examples.values()} == {
        "succeeded",
        "failed",
    }
    action = schema["components"]["schemas"]["Action"]["properties"]
    assert "async" in action


@pytest.mark.django_db
@override_settings(SAGA_WEBHOOK_SECRET="a-webhook-secret-for-the-examples")
def test_every_documented_definition_example_is_accepted(schema, internal_api):
    create = schema["paths"]["/api/saga-definitions/"]["post"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]
    bodies = [example["value"] for example in examples.values()]

    assert any("async" in step["action"] for body in bodies for step in body["steps"]), (
        "an example shows the async option"
    )
    for body in bodies:
        assert internal_api.post("/api/saga-definitions/", body, format="json").status_code == 201


@pytest.mark.django_db
def test_callbacks_are_rate_limited_per_client_ip_whatever_key_is_sent():
    path = "/api/sagas/6f1c2f8e-5a0e-4c1b-9a55-2a1f0c3e9b10/steps/pick/callback/"
    ip = unique_ip()
    client = Client(REMOTE_ADDR=ip)
    body = {"outcome": "succeeded"}

    with override_settings(RATE_LIMIT_MAX_REQUESTS=2, RATE_LIMIT_WINDOW=60):
        answers = [
            client.post(path, body, content_type="application/json", headers=headers)
            for headers in ({}, {"X-API-Key": "test-internal-key"}, {})
        ]
        elsewhere = Client(REMOTE_ADDR=unique_ip()).post(
            path, body, content_type="application/json"
        )

    assert [answer.status_code for answer in answers] == [404, 404, 429]
    assert answers[0]["X-RateLimit-Limit"] == "2"
    assert answers[2]["Retry-After"]
    assert elsewhere.status_code == 404


@pytest.mark.django_db
@override_settings(SAGA_MAX_RESPONSE_BYTES=100)
def test_a_callback_body_is_bounded_like_a_participants_answer(anon_client):
    path = "/api/sagas/6f1c2f8e-5a0e-4c1b-9a55-2a1f0c3e9b10/steps/pick/callback/"
    body = {"outcome": "succeeded", "response": {"text": "x" * 200}}

    answer = anon_client.post(path, body, format="json", REMOTE_ADDR=unique_ip())

    assert answer.status_code == 413
    assert answer.json()["code"] == "payload_too_large"


@pytest.mark.django_db(transaction=True)
@override_settings(SAGA_ALLOWED_HOSTS=["127.0.0.1", "localhost"])
def test_the_callback_token_never_follows_a_redirect_to_another_origin(participants, worker):
    elsewhere = f"http://localhost:{participants.port}/moved"
    participants.script("POST", "/pick", Reply(307, headers={"Location": elsewhere}))
    participants.script("POST", "/same", Reply(307, headers={"Location": "/kept"}))
    pick = step("pick", call(participants.url("/pick")))
    same = step("same", call(participants.url("/same")))
    for entry in (pick, same):
        entry["action"]["async"] = {"timeout_seconds": 30}

    done = drive(worker, saga_create(definition_create([pick, same])))

    assert done.status == "completed"  # both redirects ended in a 200: immediate success
    (first,), (moved,) = (
        participants.received("POST", "/pick"),
        participants.received("POST", "/moved"),
    )
    assert first.header("X-Saga-Callback-Token")
    assert moved.header("X-Saga-Callback-Token") is None
    assert moved.header("X-Saga-Callback-Url") == first.header("X-Saga-Callback-Url")
    (kept,) = participants.received("POST", "/kept")
    assert kept.header("X-Saga-Callback-Token")  # the same origin: kept
