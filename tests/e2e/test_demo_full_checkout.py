"""The demo's full checkout: examples/full_checkout.json against scripts/demo_participants.py
through Gunicorn and a worker process (what `make run` starts): a parallel group, an
asynchronous warehouse pick that calls back about a second later, and every lifecycle event
POSTed, signed, to the demo's webhook receiver, which lists what it verified."""

import pytest
import requests

from tests.e2e.demo_service import DemoService, demo_running, finished
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.sqlite]
SECRET = "a-webhook-secret-for-the-demo-test"
ORDER = {
    "order_id": "F-1",
    "items": [{"sku": "lamp", "qty": 1}],
    "amount": 30,
    "address": "1 Main St",
}


class Demo:
    def __init__(self, service: DemoService):
        self.service = service

    def start(self, saga_input: dict) -> str:
        return self.service.start("full_checkout", saga_input)

    def webhooks(self, saga_id: str) -> list[dict]:
        """The events the receiver verified and kept (its GET, as a user would curl it)."""
        answer = requests.get(f"http://127.0.0.1:{self.service.port}/webhooks", timeout=5)
        assert answer.status_code == 200, answer.text
        return [event for event in answer.json() if event["saga_id"] == saga_id]

    def webhooks_until(self, saga_id: str, last_type: str) -> list[dict]:
        def arrived():
            events = self.webhooks(saga_id)
            return events if events and events[-1]["type"] == last_type else None

        return wait_until(arrived, timeout=30, interval=0.1, what=f"{last_type} webhook")

    def printed(self) -> str:
        return self.service.printed()


@pytest.fixture
def demo(tmp_path):
    with demo_running(
        tmp_path, "full_checkout.json", worker_concurrency=2, SAGA_WEBHOOK_SECRET=SECRET
    ) as service:
        yield Demo(service)


def test_the_group_the_callback_and_the_signed_webhooks_of_a_completed_checkout(demo):
    saga_id = demo.start(ORDER)

    done = wait_until(lambda: finished(saga_id), timeout=30)
    events = demo.webhooks_until(saga_id, "saga.completed")

    assert done.status == "completed"
    steps = {step["name"]: step for step in done.steps}
    assert [s["status"] for s in done.steps] == ["succeeded"] * 4
    assert steps["reserve_inventory"]["group"] == steps["authorise_payment"]["group"] == "prepare"
    # The 202 said {"pick_id", "status": "accepted"}; the callback's response replaced it.
    assert steps["pick_order"]["response"] == {
        "pick_id": steps["pick_order"]["response"]["pick_id"],
        "boxes": 1,
    }
    assert [e["type"] for e in events] == ["saga.started"] + ["step.succeeded"] * 4 + [
        "saga.completed"
    ]
    assert {e["data"]["step"] for e in events[1:5]} == set(steps)
    assert f"demo: webhook saga.completed {saga_id} (signature ok)" in demo.printed()


def test_a_declined_card_compensates_the_group_and_the_webhook_says_so(demo):
    saga_id = demo.start(ORDER | {"order_id": "F-2", "card": "declined"})

    done = wait_until(lambda: finished(saga_id), timeout=30)
    events = demo.webhooks_until(saga_id, "saga.compensated")

    assert done.status == "compensated"
    failed = [e for e in events if e["type"] == "step.failed"]
    assert [e["data"]["step"] for e in failed] == ["authorise_payment"]
    assert events[-1]["data"]["error"]["step"] == "authorise_payment"
    assert f"demo: webhook saga.compensated {saga_id} (signature ok)" in demo.printed()
    assert "NOT verified" not in demo.printed()
