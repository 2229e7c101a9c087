"""Template edges seen by a real participant: what path it receives, and a placeholder
that cannot resolve failing the step for good instead of looping."""

import pytest

from tests.participants import Reply
from tests.saga_builders import attempts, call, definition_create, drive, saga_create, step

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def test_dot_segments_from_input_reach_the_participant_percent_encoded(participants, worker):
    participants.script("GET", "/users/*", Reply(200, {"ok": True}))
    url = participants.url("/users/${input.id}/orders/${input.sub}")
    definition = definition_create([step("read", call(url, method="GET"))])
    saga = saga_create(definition, {"id": "..", "sub": "."})

    done = drive(worker, saga)

    assert done.status == "completed"
    assert [r.path for r in participants.received()] == ["/users/%2E%2E/orders/%2E"]


def test_an_index_in_superscript_digits_fails_the_step_once_for_good(participants, worker):
    """A definition stored before registration refused `²`: the step fails permanently
    with the template error (no call, no endless rescheduling)."""
    definition = definition_create(
        [step("pick", call(participants.url("/pick"), body={"item": "${input.items.²}"}))]
    )
    saga = saga_create(definition, {"items": ["a", "b", "c"]})

    done = drive(worker, saga)

    assert done.status == "compensated"
    assert done.steps[0]["status"] == "failed"
    assert "input.items.²" in done.steps[0]["error"]
    assert participants.received() == []
    assert len(attempts(saga)) <= 1
