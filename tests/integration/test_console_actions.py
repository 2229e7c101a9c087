"""The console's actions: offered by role and status, CSRF and role enforced, run through
the API's services (sagas.engine.control), their refusals shown in plain words."""

import pytest

from sagas.api.auth import CLIENT, INTERNAL
from sagas.models import SagaInstance
from tests.api_builders import finished_saga, post_definition, saga_row
from tests.console_helpers import no_key_in, post_form, signed_in

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


def test_pause_is_offered_to_the_internal_key_and_recorded_with_its_reason(checkout):
    saga = saga_row()
    client = signed_in(INTERNAL)
    assert offered(client, saga) == {"cancel", "pause"}
    response = act(client, saga, "pause", confirm="on", reason="participant deploy")
    assert response.status_code == 302
    saga.refresh_from_db()
    assert saga.status == "paused"
    page = client.get(f"/console/sagas/{saga.id}/").content.decode()
    assert "participant deploy" in page  # the history row
    assert client.session["console_key_id"] in page  # who did it, by key_id
    assert offered(client, saga) == {"cancel", "resume"}


def test_a_resume_with_a_bad_patch_is_a_400_naming_the_field(checkout):
    saga = saga_row()
    client = signed_in(INTERNAL)
    act(client, saga, "pause", confirm="on")
    not_json = act(client, saga, "resume", confirm="on", input_patch="{nope")
    assert not_json.status_code == 400 and b"Not valid JSON" in not_json.content
    not_object = act(client, saga, "resume", confirm="on", input_patch="[1]")
    assert not_object.status_code == 400
    assert b"Must be a JSON object" in not_object.content
    unknown = act(client, saga, "resume", confirm="on", from_step="nowhere")
    assert unknown.status_code == 400
    assert SagaInstance.objects.get(id=saga.id).status == "paused"


def test_action_bodies_are_checked_by_the_apis_serializers(checkout):
    saga = saga_row()
    client = signed_in(INTERNAL)
    too_long = act(client, saga, "pause", confirm="on", reason="x" * 501)
    assert too_long.status_code == 400
    assert b"Ensure this field has no more than 500 characters." in too_long.content
    act(client, saga, "pause", confirm="on")
    null_patch = act(client, saga, "resume", confirm="on", input_patch="null")
    assert null_patch.status_code == 400  # the API refuses a null patch too
    assert SagaInstance.objects.get(id=saga.id).status == "paused"
