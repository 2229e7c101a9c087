"""The console's actions: offered by role and status, CSRF and role enforced, run through
the API's services (sagas.engine.control), their refusals shown in plain words."""

import pytest
from django.conf import settings

from console import actions
from sagas.api.auth import CLIENT, INTERNAL
from sagas.models import SagaInstance
from tests.api_builders import finished_saga, post_definition, saga_row
from tests.console.helpers import no_key_in, post_form, signed_in

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]
INTERNAL_ONLY = ("retry", "pause", "resume")


@pytest.fixture
def checkout(internal_api):
    assert post_definition(internal_api).status_code == 201


def act(client, saga, action: str, **data):
    page = f"/console/sagas/{saga.id}/"
    return post_form(client, f"{page}{action}/", data, token_from=page)


def offered(client, saga) -> set[str]:
    html = client.get(f"/console/sagas/{saga.id}/").content.decode()
    return {a for a in ("cancel", *INTERNAL_ONLY) if f'id="form-{a}"' in html}


def test_the_client_key_is_offered_cancel_only_and_cancels_with_a_reason(checkout):
    saga = saga_row()
    client = signed_in(CLIENT)
    assert offered(client, saga) == {"cancel"}
    response = act(client, saga, "cancel", confirm="on", reason="customer called")
    assert response.status_code == 302 and response["Location"] == f"/console/sagas/{saga.id}/"
    assert SagaInstance.objects.get(id=saga.id).status == "cancelled"
    after = client.get(response["Location"])
    assert b"Cancel accepted." in after.content and no_key_in(after)
    assert offered(client, saga) == set()  # nothing left to do


@pytest.mark.parametrize("action", INTERNAL_ONLY)
def test_internal_actions_posted_with_the_client_key_are_refused(checkout, action):
    saga = finished_saga("failed")
    client = signed_in(CLIENT)
    response = act(client, saga, action, confirm="on")
    assert response.status_code == 403
    assert b"may not" in response.content
    assert SagaInstance.objects.get(id=saga.id).status == "failed"


@pytest.mark.parametrize("role", [CLIENT, INTERNAL])
def test_an_action_without_the_csrf_token_is_refused(checkout, role):
    saga = saga_row()
    client = signed_in(role)
    response = client.post(f"/console/sagas/{saga.id}/cancel/", {"confirm": "on"})
    assert response.status_code == 403
    assert SagaInstance.objects.get(id=saga.id).cancel_requested is False


def test_an_action_needs_its_confirmation_and_a_short_reason(checkout):
    saga = saga_row()
    client = signed_in(CLIENT)
    unconfirmed = act(client, saga, "cancel", reason="oops")
    assert unconfirmed.status_code == 400 and b"Tick the box to confirm." in unconfirmed.content
    too_long = act(client, saga, "cancel", confirm="on", reason="x" * 501)
    assert too_long.status_code == 400
    assert SagaInstance.objects.get(id=saga.id).status == "pending"


def test_a_refused_action_shows_the_services_conflict(checkout):
    saga = finished_saga("completed")
    response = act(signed_in(CLIENT), saga, "cancel", confirm="on")
    assert response.status_code == 409
    assert b"completed" in response.content and b'role="alert"' in response.content


def test_the_internal_key_retries_a_failed_saga(checkout):
    saga = finished_saga("failed")
    SagaInstance.objects.filter(id=saga.id).update(current_step=0)
    client = signed_in(INTERNAL)
    assert "retry" in offered(client, saga)
    response = act(client, saga, "retry", confirm="on", reason="participant fixed")
    assert response.status_code == 302
    assert SagaInstance.objects.get(id=saga.id).status == "compensating"


def test_an_unknown_action_is_not_a_page(checkout):
    saga = saga_row()
    client = signed_in(INTERNAL)
    response = post_form(client, f"/console/sagas/{saga.id}/explode/", {}, token_from="/console/")
    assert response.status_code == 404


def test_actions_pass_the_actor_and_reason_where_the_service_takes_them():
    def service(*, saga_id, actor, reason):
        return None

    def older_service(*, saga_id):
        return None

    actor = actions.control.Actor(role="internal", key_id="abcd1234")
    assert actions._accepted(service, {"saga_id": 1, "actor": actor, "reason": "r"}) == {
        "saga_id": 1,
        "actor": actor,
        "reason": "r",
    }
    assert actions._accepted(older_service, {"saga_id": 1, "actor": actor}) == {"saga_id": 1}
    assert settings.INTERNAL_API_KEY not in repr(actor)
