"""Builders of request bodies and database rows for API tests (plain functions, no magic)."""

import copy
from datetime import timedelta

from django.utils import timezone

from sagas.models import SagaAttempt, SagaInstance
from sagas.services import saga_start

PARTICIPANT = "http://participant.test:8000"


def call(path: str = "/do", method: str = "POST", **fields) -> dict:
    return {"method": method, "url": PARTICIPANT + path, **fields}


def step(name: str, action: dict | None = None, compensation: dict | None = None, **fields):
    body = {"name": name, "action": action or call(f"/{name}")}
    if compensation is not None:
        body["compensation"] = compensation
    return {**body, **fields}


def definition(name: str = "checkout", steps: list | None = None, **fields) -> dict:
    """A valid two-step definition; the second step uses the first one's response."""
    if steps is None:
        steps = [
            step(
                "reserve",
                call("/reservations", body={"order": "${input.order_id}"}),
                call("/reservations/${steps.reserve.response.id}", method="DELETE"),
            ),
            step("charge", call("/charges", body={"reservation": "${steps.reserve.response.id}"})),
        ]
    return {"name": name, "steps": copy.deepcopy(steps), **fields}


def post_definition(api, body: dict | None = None):
    return api.post("/api/saga-definitions/", body or definition(), format="json")


def saga_row(definition_name: str = "checkout", saga_input: dict | None = None, **fields):
    """A saga started through the service, then moved to `fields` (status, times…)."""
    saga, _ = saga_start(
        definition=definition_name, version=None, saga_input=saga_input or {}, idempotency_key=None
    )
    if fields:
        SagaInstance.objects.filter(id=saga.id).update(**fields)
        saga.refresh_from_db()
    return saga


def finished_saga(status: str, minutes_ago: float = 1, duration_s: float = 2.0, **fields):
    finished = timezone.now() - timedelta(minutes=minutes_ago)
    return saga_row(
        status=status,
        created_at=finished - timedelta(seconds=duration_s),
        finished_at=finished,
        next_attempt_at=None,
        **fields,
    )


def attempt_row(saga, step: str, attempt: int = 1, phase: str = "action", **fields):
    values = {
        "saga": saga,
        "step": step,
        "step_index": 0,
        "phase": phase,
        "attempt": attempt,
        "method": "POST",
        "url": PARTICIPANT + "/" + step,
        "status_code": 200,
        "outcome": "succeeded",
        "error": None,
        "started_at": timezone.now(),
        "duration_ms": 12.5,
    }
    return SagaAttempt.objects.create(**{**values, **fields})


def nested(levels: int, leaf=1):
    """`levels` lists inside each other around `leaf`: nested(2) == [[1]]."""
    value = leaf
    for _ in range(levels):
        value = [value]
    return value
