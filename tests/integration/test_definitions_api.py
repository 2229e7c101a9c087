"""POST/GET /api/saga-definitions/: versioning, normalisation, roles, pagination."""

import threading

import pytest
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from sagas.jsonutil import content_hash
from sagas.models import SagaDefinition
from tests.api_builders import call, definition, post_definition, step

pytestmark = pytest.mark.django_db


def test_create_returns_201_with_version_1_and_normalised_steps(internal_api):
    response = post_definition(internal_api)

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "checkout"
    assert body["version"] == 1
    assert body["description"] == ""
    first = body["steps"][0]
    assert first["action"]["headers"] == {}
    assert first["action"]["timeout_seconds"] == 30.0
    assert first["compensation"]["method"] == "DELETE"
    assert first["compensation"]["body"] is None
    assert body["steps"][1]["compensation"] is None


@override_settings(SAGA_RETRY_ATTEMPTS=4, SAGA_RETRY_DELAY=1.5, SAGA_TIMEOUT=120.0)
def test_defaults_come_from_settings(internal_api):
    partial_retry = step("only", retry={"max_attempts": 7})
    body = post_definition(internal_api, definition("defaults", [step("first"), partial_retry]))

    stored = body.json()
    assert stored["timeout_seconds"] == 120.0
    assert stored["steps"][0]["retry"] == {
        "max_attempts": 4,
        "delay_seconds": 1.5,
        "backoff_multiplier": 2.0,
        "max_delay_seconds": 60.0,
    }
    assert stored["steps"][1]["retry"]["max_attempts"] == 7
    assert stored["steps"][1]["retry"]["delay_seconds"] == 1.5


def test_identical_repost_returns_200_and_no_new_version(internal_api):
    first = post_definition(internal_api)
    again = post_definition(internal_api)

    assert again.status_code == 200
    assert again.json()["version"] == first.json()["version"] == 1
    assert SagaDefinition.objects.filter(name="checkout").count() == 1


def test_repost_with_defaults_spelled_out_is_identical(internal_api):
    post_definition(internal_api)
    explicit = definition(timeout_seconds=300, description="")
    explicit["steps"][1]["compensation"] = None
    explicit["steps"][1]["action"]["headers"] = {}
    explicit["steps"][1]["action"]["timeout_seconds"] = 30

    assert post_definition(internal_api, explicit).status_code == 200


def test_on_failure_is_shown_on_the_definition_and_every_step(internal_api):
    body = definition(on_failure="pause")
    body["steps"][1]["on_failure"] = "compensate"
    stored = post_definition(internal_api, body).json()

    assert stored["on_failure"] == "pause"
    assert [s["on_failure"] for s in stored["steps"]] == ["pause", "compensate"]
    assert post_definition(internal_api, body).status_code == 200
    body["on_failure"] = "compensate"
    assert post_definition(internal_api, body).json()["version"] == 2


def test_a_definition_stored_before_on_failure_is_the_same_when_posted_again(internal_api):
    first = post_definition(internal_api).json()
    assert first["on_failure"] == "compensate"
    # The hash a release without the option stored: the normalised form had no on_failure.
    old = SagaDefinition.objects.get(name="checkout")
    old_form = {
        "name": old.name,
        "description": old.description,
        "timeout_seconds": old.timeout_seconds,
        "steps": [{k: v for k, v in s.items() if k != "on_failure"} for s in old.steps],
    }
    assert old.content_hash == content_hash(old_form)

    assert post_definition(internal_api).status_code == 200
    explicit = definition(on_failure="compensate")
    assert post_definition(internal_api, explicit).status_code == 200


def test_changed_definition_creates_next_version_and_keeps_the_old(internal_api, client_api):
    post_definition(internal_api)
    changed = post_definition(internal_api, definition(description="now with a description"))

    assert changed.status_code == 201
    assert changed.json()["version"] == 2
    latest = client_api.get("/api/saga-definitions/checkout/").json()
    assert latest["version"] == 2
    old = client_api.get("/api/saga-definitions/checkout/?version=1").json()
    assert old["version"] == 1
    assert old["description"] == ""


def test_get_unknown_name_or_version_is_404(internal_api, client_api):
    post_definition(internal_api)

    assert client_api.get("/api/saga-definitions/nope/").status_code == 404
    assert client_api.get("/api/saga-definitions/checkout/?version=9").status_code == 404
    assert client_api.get("/api/saga-definitions/Not%20A%20Name/").status_code == 404


@pytest.mark.parametrize("version", ["abc", "0", "-1", "1.5"])
def test_get_with_invalid_version_is_400(internal_api, client_api, version):
    post_definition(internal_api)

    response = client_api.get(f"/api/saga-definitions/checkout/?version={version}")

    assert response.status_code == 400
    assert "version" in response.json()["errors"]


def test_list_shows_the_latest_version_of_each_name_paginated(internal_api, client_api):
    for name in ("alpha", "beta", "gamma"):
        post_definition(internal_api, definition(name))
    post_definition(internal_api, definition("beta", description="v2"))

    page1 = client_api.get("/api/saga-definitions/?page_size=2").json()
    page2 = client_api.get(page1["next"]).json()

    assert page1["count"] == 3
    assert [(d["name"], d["version"]) for d in page1["results"]] == [("alpha", 1), ("beta", 2)]
    assert [d["name"] for d in page2["results"]] == ["gamma"]
    assert page2["next"] is None
    assert page2["previous"] is not None


def test_client_key_may_read_but_not_create(client_api):
    response = post_definition(client_api)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert client_api.get("/api/saga-definitions/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_of_one_name_make_one_version_and_no_error(settings):
    changed = [definition(description=f"variant {n}") for n in range(4)]
    same = [definition()] * 4
    statuses: list[int] = []
    barrier = threading.Barrier(len(changed) + len(same))

    def post(body):
        api = APIClient()
        api.credentials(HTTP_X_API_KEY=settings.INTERNAL_API_KEY)
        barrier.wait()
        try:
            statuses.append(post_definition(api, body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(body,)) for body in changed + same]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert set(statuses) <= {200, 201}, statuses
    versions = list(
        SagaDefinition.objects.filter(name="checkout").values_list("version", flat=True)
    )
    assert sorted(versions) == list(range(1, len(versions) + 1))
    # Each distinct content is stored at most once per run of identical posts.
    assert len(versions) == statuses.count(201)


def test_compensation_may_use_its_own_step_but_the_action_may_not(internal_api):
    own = "${steps.reserve.response.id}"
    ok = definition(steps=[step("reserve", compensation=call(f"/undo/{own}", method="DELETE"))])
    bad = definition(steps=[step("reserve", call(f"/do/{own}"))])

    assert post_definition(internal_api, ok).status_code == 201
    response = post_definition(internal_api, bad)
    assert response.status_code == 400
    assert "does not run before" in response.json()["errors"]["steps"]["0"]["action"]["url"][0]


@override_settings(SAGA_ALLOWED_HOSTS=["participant.test", "*.internal"])
def test_allowed_hosts_accept_listed_and_templated_hosts(internal_api):
    steps = [
        step("a", call()),
        step("b", {"method": "GET", "url": "https://svc.internal/x/${input.id}"}),
        step("c", {"method": "GET", "url": "http://${input.host}:8000/x"}),
    ]

    assert post_definition(internal_api, definition(steps=steps)).status_code == 201
