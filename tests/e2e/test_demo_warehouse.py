"""The demo's asynchronous step: examples/warehouse_checkout.json against
scripts/demo_participants.py, whose warehouse answers 202 and calls back about a second
later, through Gunicorn and a worker process (what `make run` starts)."""

import pytest

from sagas.models import SagaInstance
from tests.e2e.demo_service import demo_running, finished
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.sqlite]
ORDER = {
    "order_id": "W-1",
    "items": [{"sku": "lamp", "qty": 1}],
    "amount": 30,
    "address": "1 Main St",
}


@pytest.fixture
def demo(tmp_path):
    with demo_running(tmp_path, "warehouse_checkout.json") as service:
        yield service


def start(demo, saga_input: dict) -> str:
    return demo.start("warehouse_checkout", saga_input)


def test_the_warehouse_waits_then_calls_back_and_the_saga_completes(demo):
    saga_id = start(demo, ORDER)

    wait_until(lambda: SagaInstance.objects.get(id=saga_id).steps[1]["status"] == "waiting")
    done = wait_until(lambda: finished(saga_id), timeout=30)

    assert done.status == "completed"
    assert done.steps[1]["response"]["pick_id"].startswith("pick-")
    assert [s["status"] for s in done.steps] == ["succeeded"] * 3


def test_an_empty_shelf_calls_back_failed_and_the_payment_is_refunded(demo):
    saga_id = start(demo, ORDER | {"order_id": "W-2", "stock": "none"})

    done = wait_until(lambda: finished(saga_id), timeout=30)

    assert done.status == "compensated"
    assert [s["status"] for s in done.steps] == ["compensated", "failed", "skipped"]
    assert done.error["message"] == "callback: out of stock at the warehouse"
