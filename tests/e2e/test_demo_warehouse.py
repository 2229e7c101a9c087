"""The demo's asynchronous step: examples/warehouse_checkout.json against
scripts/demo_participants.py, whose warehouse answers 202 and calls back about a second
later, through Gunicorn and a worker process (what `make run` starts)."""

import json
import subprocess
import sys

import pytest
import requests
from django.conf import settings

from sagas.models import SagaInstance
from tests.e2e.workers import ROOT, WorkerProcess
from tests.gunicorn_process import gunicorn_start
from tests.support import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.sqlite]
ORDER = {
    "order_id": "W-1",
    "items": [{"sku": "lamp", "qty": 1}],
    "amount": 30,
    "address": "1 Main St",
}


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
    except requests.RequestException:
        return False


@pytest.fixture
def demo(tmp_path):
    port = free_port()
    participants = subprocess.Popen(
        [sys.executable, "scripts/demo_participants.py", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    api = gunicorn_start(tmp_path, workers=1)
    worker = WorkerProcess(tmp_path, concurrency=1, SAGA_PUBLIC_URL=api.base_url)
    try:
        wait_until(lambda: _up(port), timeout=10)
        text = (ROOT / "examples/warehouse_checkout.json").read_text()
        example = json.loads(text.replace("127.0.0.1:8009", f"127.0.0.1:{port}"))
        answer = requests.post(
            api.base_url + "/api/saga-definitions/",
            json=example,
            headers={"X-API-Key": settings.INTERNAL_API_KEY},
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        yield api
    finally:
        worker.close()
        api.stop()
        participants.terminate()
        participants.wait(timeout=10)


def start(api, saga_input: dict) -> str:
    answer = requests.post(
        api.base_url + "/api/sagas/",
        json={"definition": "warehouse_checkout", "input": saga_input},
        headers={"X-API-Key": settings.SAGA_API_KEY},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def finished(saga_id: str) -> SagaInstance | None:
    saga = SagaInstance.objects.get(id=saga_id)
    return saga if saga.status in ("completed", "compensated") else None


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
