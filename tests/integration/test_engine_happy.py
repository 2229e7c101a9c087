import pytest

from sagas.models import Phase
from tests.participants import Reply
from tests.saga_builders import attempts, call, definition_create, drive, saga_create, step

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


def test_happy_path_calls_in_order_with_typed_templates_and_headers(participants, worker):
    participants.script("POST", "/reserve", Reply(201, {"reservation_id": "r-9", "n": 2}))
    participants.script("POST", "/charge", Reply(200, {"payment_id": "p-1"}))
    participants.script("POST", "/ship", Reply(200, "shipped"))
    definition = definition_create(
        [
            step(
                "reserve",
                call(
                    participants.url("/reserve"),
                    body={"order": "${input.order_id}", "items": "${input.items}"},
                    headers={"X-Tenant": "${input.tenant}"},
                ),
            ),
            step(
                "charge",
                call(
                    participants.url("/charge"),
                    body={
                        "reservation": "${steps.reserve.response.reservation_id}",
                        "count": "${steps.reserve.response.n}",
                        "note": "order ${input.order_id} x${steps.reserve.response.n}",
                    },
                ),
            ),
            step("ship", call(participants.url("/ship"))),
        ]
    )
    saga = saga_create(
        definition, {"order_id": "A-1", "items": [{"sku": "x", "qty": 2}], "tenant": "t1"}
    )

    done = drive(worker, saga)

    assert done.status == "completed"
    assert [s["status"] for s in done.steps] == ["succeeded"] * 3
    assert done.steps[0]["response"] == {"reservation_id": "r-9", "n": 2}
    assert done.steps[2]["response"] == "shipped"
    assert done.error is None and done.finished_at is not None
    reserve, charge, ship = (
        participants.received(path=p)[0] for p in ("/reserve", "/charge", "/ship")
    )
    assert reserve.at < charge.at < ship.at
    assert reserve.body == {"order": "A-1", "items": [{"sku": "x", "qty": 2}]}
    assert charge.body == {"reservation": "r-9", "count": 2, "note": "order A-1 x2"}
    assert reserve.header("X-Tenant") == "t1"
    assert reserve.header("Content-Type") == "application/json"
    assert reserve.header("Idempotency-Key") == f"{saga.id}:reserve:action"
    assert reserve.header("X-Saga-Id") == str(saga.id)
    assert reserve.header("X-Saga-Step") == "reserve"
    assert reserve.header("X-Request-ID")
    logged = attempts(saga)
    assert [(a.step, a.phase, a.attempt, a.outcome, a.status_code) for a in logged] == [
        ("reserve", Phase.ACTION, 1, "succeeded", 201),
        ("charge", Phase.ACTION, 1, "succeeded", 200),
        ("ship", Phase.ACTION, 1, "succeeded", 200),
    ]
