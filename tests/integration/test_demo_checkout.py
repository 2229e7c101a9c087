"""The README's demo: examples/order_checkout.json against scripts/demo_participants.py."""

import json
import subprocess
import sys

import pytest
import requests

from tests.e2e.workers import ROOT
from tests.saga_builders import definition_create, drive, saga_create
from tests.support import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
ORDER = {
    "order_id": "A-1",
    "items": [{"sku": "book", "qty": 1}],
    "amount": 42,
    "address": "1 Main St",
}


@pytest.fixture
def demo_definition():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "scripts/demo_participants.py", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _up(port), timeout=10)
        text = (ROOT / "examples/order_checkout.json").read_text()
        example = json.loads(text.replace("127.0.0.1:8009", f"127.0.0.1:{port}"))
        yield definition_create(
            example["steps"], name=example["name"], timeout_seconds=example["timeout_seconds"]
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


def _up(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
    except requests.RequestException:
        return False


def statuses(saga):
    return [s["status"] for s in saga.steps]


def test_a_good_order_completes(demo_definition, worker):
    done = drive(worker, saga_create(demo_definition, ORDER))
    assert done.status == "completed"
    assert done.steps[0]["response"]["reservation_id"].startswith("res-")


def test_a_declined_card_compensates_the_reservation_only(demo_definition, worker):
    done = drive(worker, saga_create(demo_definition, {**ORDER, "card": "declined"}))
    assert done.status == "compensated"
    assert done.error == {
        "code": "step_failed",
        "step": "charge_payment",
        "message": "HTTP 422: card declined",
    }
    assert statuses(done) == ["compensated", "failed", "skipped"]


def test_a_shipping_outage_compensates_every_step(demo_definition, worker):
    done = drive(worker, saga_create(demo_definition, {**ORDER, "fail": "shipping"}))
    assert done.status == "compensated"
    assert statuses(done) == ["compensated", "compensated", "compensated"]
    assert done.steps[2]["attempts"] == 2
