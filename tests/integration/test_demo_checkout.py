"""The README's demo: examples/order_checkout.json against scripts/demo_participants.py."""

import json
import subprocess
import sys

import pytest
import requests

from sagas.models import SagaInstance
from tests.e2e.workers import ROOT
from tests.saga_builders import definition_create, drive, saga_create, saga_get
from tests.support import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
ORDER = {
    "order_id": "A-1",
    "items": [{"sku": "book", "qty": 1}],
    "amount": 42,
    "address": "1 Main St",
}


@pytest.fixture
def demo_port():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "scripts/demo_participants.py", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _up(port), timeout=10)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def example(name: str, port: int) -> dict:
    """An example definition calling the demo participants on `port`."""
    text = (ROOT / "examples" / name).read_text()
    return json.loads(text.replace("127.0.0.1:8009", f"127.0.0.1:{port}"))


@pytest.fixture
def demo_definition(demo_port):
    body = example("order_checkout.json", demo_port)
    return definition_create(
        body["steps"], name=body["name"], timeout_seconds=body["timeout_seconds"]
    )


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


def test_an_address_without_a_house_number_is_rejected(demo_definition, worker):
    done = drive(worker, saga_create(demo_definition, {**ORDER, "address": "Main St"}))

    assert done.status == "compensated"
    assert statuses(done) == ["compensated", "compensated", "failed"]
    assert done.error["message"] == (
        "HTTP 422: address not deliverable: 'Main St' has no house number"
    )


def test_the_readme_repair_pauses_on_the_address_and_completes_once_patched(
    demo_port, worker, internal_api, client_api
):
    """README, "Repairing a saga": examples/order_checkout_repairable.json."""
    body = example("order_checkout_repairable.json", demo_port)
    assert internal_api.post("/api/saga-definitions/", body, format="json").status_code == 201
    start = {"definition": body["name"], "input": {**ORDER, "address": "Main St"}}
    saga_id = client_api.post("/api/sagas/", start, format="json").json()["id"]
    saga = SagaInstance.objects.get(id=saga_id)
    wait_until(lambda: worker.tick() or saga_get(saga).status == "paused", timeout=10)
    assert statuses(saga_get(saga)) == ["succeeded", "succeeded", "failed"]

    patch = {"input_patch": {"address": "1 Main St"}, "reason": "corrected"}
    resumed = internal_api.post(f"/api/sagas/{saga_id}/resume/", patch, format="json")

    assert resumed.status_code == 202
    assert drive(worker, saga).status == "completed"
    calls = client_api.get(f"/api/sagas/{saga_id}/logs/").json()
    assert [(c["step"], c["run"], c["status_code"]) for c in calls] == [
        ("reserve_inventory", 1, 201),
        ("charge_payment", 1, 201),
        ("ship_order", 1, 422),
        ("ship_order", 2, 201),
    ]


@pytest.fixture
def parallel_definition(demo_port):
    body = example("parallel_checkout.json", demo_port)
    return definition_create(
        body["steps"], name=body["name"], timeout_seconds=body["timeout_seconds"]
    )


def test_the_parallel_checkout_reserves_and_authorises_at_once_then_ships(
    parallel_definition, worker
):
    done = drive(worker, saga_create(parallel_definition, ORDER))

    assert done.status == "completed"
    assert [(s["name"], s.get("group")) for s in done.steps] == [
        ("reserve_inventory", "prepare"),
        ("authorise_payment", "prepare"),
        ("ship_order", None),
    ]
    assert done.steps[2]["response"]["shipment_id"]


def test_the_parallel_checkout_with_a_declined_card_releases_the_reservation(
    parallel_definition, worker
):
    done = drive(worker, saga_create(parallel_definition, {**ORDER, "card": "declined"}))

    assert done.status == "compensated"
    assert done.error["step"] == "authorise_payment"
    assert statuses(done) == ["compensated", "failed", "skipped"]
