"""Operator repair from the console, with a real worker and participants: a saga paused
by a rejected step is resumed with an input patch and completes; the history and the
timeline show it."""

import re

import pytest

from sagas.api.auth import INTERNAL
from tests.console_helpers import post_form, signed_in
from tests.integration.test_engine_repair import order, paused_on
from tests.saga_builders import drive, saga_create

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
