"""Operator repair from the console, with a real worker and participants: a saga paused
by a rejected step is resumed with an input patch and completes; the history and the
timeline show it."""

import re

import pytest

from sagas.api.auth import INTERNAL
from tests.console_helpers import post_form, signed_in
from tests.integration.test_engine_repair import order, paused_on
from tests.saga_builders import drive, saga_create, saga_get

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def test_a_paused_saga_resumed_with_an_input_patch_completes(participants, worker):
    saga = paused_on(worker, saga_create(order(participants), {"street": ""}))
    client = signed_in(INTERNAL)
    page_url = f"/console/sagas/{saga.id}/"
    page = client.get(page_url).content.decode()
    assert "paused: address failed — HTTP 422" in page
    assert 'id="form-resume"' in page and 'id="form-retry"' not in page

    response = post_form(
        client,
        page_url + "resume/",
        {"confirm": "on", "reason": "street fixed", "input_patch": '{"street": "1 Main St"}'},
        token_from=page_url,
    )
    assert response.status_code == 302
    done = drive(worker, saga)
    assert done.status == "completed" and done.input == {"street": "1 Main St"}

    page = client.get(page_url).content.decode()
    assert "completed: every step succeeded" in page
    history = re.findall(r'<tr><td class="nowrap">[^<]*</td><td>(\w+)</td>', page)
    assert "paused" in history and "resumed" in history and history[-1] == "finished"
    assert "street fixed" in page
    assert "{&quot;input_patch&quot;: {&quot;street&quot;: &quot;1 Main St&quot;}}" in page
    bars = re.findall(r'<rect class="bar outcome-(\w+)"', page)
    assert bars.count("permanent_error") == 1 and bars[-1] == "succeeded"


def test_a_paused_step_skipped_with_a_response_lets_the_saga_complete(participants, worker):
    saga = paused_on(worker, saga_create(order(participants), {"street": ""}))
    client = signed_in(INTERNAL)
    page_url = f"/console/sagas/{saga.id}/"
    data = {"confirm": "on", "skip": "on", "skip_response": '{"label": "L-hand"}'}
    response = post_form(client, page_url + "resume/", data, token_from=page_url)
    assert response.status_code == 302
    done = drive(worker, saga)
    assert done.status == "completed"
    assert done.steps[1]["response"] == {"label": "L-hand"}
    ship = participants.received("POST", "/ship")
    assert [request.body for request in ship] == [{"label": "L-hand"}]


def test_skip_with_a_rewind_is_refused_as_the_api_refuses_it(participants, worker):
    saga = paused_on(worker, saga_create(order(participants), {"street": ""}))
    client = signed_in(INTERNAL)
    page_url = f"/console/sagas/{saga.id}/"
    data = {"confirm": "on", "skip": "on", "skip_response": "{}", "from_step": "reserve"}
    response = post_form(client, page_url + "resume/", data, token_from=page_url)
    assert response.status_code == 400
    assert b'role="alert"' in response.content
    assert saga_get(saga).status == "paused"
