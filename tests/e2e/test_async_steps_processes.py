"""Asynchronous steps across real processes (DESIGN §9.4): sagas started through Gunicorn,
run by a worker process with ONE thread, callbacks posted to Gunicorn over HTTP.

A saga waiting for its callback holds no worker thread (a second saga runs meanwhile); the
callback moves it on and its response feeds a later step; a participant that calls back
before answering its 202 (the callback beats the recording of the 202, across processes)
is applied too. Callbacks are counted in /metrics and logged as `SAGA` lines without the
token."""

import threading

import pytest
import requests
from django.conf import settings

from sagas.models import SagaInstance
from tests.e2e.test_metrics_multiprocess import samples
from tests.gunicorn_process import gunicorn_start
from tests.participants import Reply
from tests.saga_builders import saga_get
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.sqlite]


@pytest.fixture
def service(tmp_path, workers):
    """Gunicorn, and a one-thread worker whose callback URLs point at it."""
    api = gunicorn_start(tmp_path, workers=2)
    try:
        yield api, workers(concurrency=1, SAGA_PUBLIC_URL=api.base_url)
    finally:
        api.stop()


def api_post(api, path, body, key=None, **headers):
    key = key or settings.SAGA_API_KEY
    return requests.post(
        api.base_url + path, json=body, headers={"X-API-Key": key, **headers}, timeout=30
    )


def register(api, definition: dict) -> None:
    answer = api_post(api, "/api/saga-definitions/", definition, settings.INTERNAL_API_KEY)
    assert answer.status_code == 201, answer.text


def start(api, name: str, saga_input: dict) -> str:
    answer = api_post(api, "/api/sagas/", {"definition": name, "input": saga_input})
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def warehouse(participants, name="warehouse") -> dict:
    url = participants.url
    return {
        "name": name,
        "steps": [
            {
                "name": "pick",
                "action": {
                    "method": "POST",
                    "url": url("/pick"),
                    "body": {"order": "${input.order}"},
                    "async": {"timeout_seconds": 120},
                },
                "compensation": {"method": "POST", "url": url("/pick/cancel")},
            },
            {
                "name": "ship",
                "action": {
                    "method": "POST",
                    "url": url("/ship"),
                    "body": {"box": "${steps.pick.response.box}"},
                },
            },
        ],
    }


def status_of(saga_id: str) -> SagaInstance:
    return SagaInstance.objects.get(id=saga_id)


def test_a_waiting_saga_holds_no_thread_and_its_callback_moves_it_on(participants, service):
    api, worker = service
    participants.script("POST", "/pick", Reply(202, {"accepted": True}))
    register(api, warehouse(participants))
    quick = {
        "name": "quick",
        "steps": [{"name": "one", "action": {"method": "POST", "url": participants.url("/one")}}],
    }
    register(api, quick)

    waiting = start(api, "warehouse", {"order": "A-1"})
    wait_until(lambda: status_of(waiting).steps[0]["status"] == "waiting", timeout=30)
    other = start(api, "quick", {})
    # The worker's only thread is free: the second saga completes while the first waits.
    wait_until(lambda: status_of(other).status == "completed", timeout=30)
    assert status_of(waiting).status == "running"
    assert status_of(waiting).lease_token is None

    pick = participants.received("POST", "/pick")[0]
    url, token = pick.header("X-Saga-Callback-Url"), pick.header("X-Saga-Callback-Token")
    assert url == f"{api.base_url}/api/sagas/{waiting}/steps/pick/callback/"
    body = {"outcome": "succeeded", "response": {"box": "B-7"}}
    wrong = requests.post(url, json=body, headers={"X-Saga-Callback-Token": "x"}, timeout=30)
    answer = requests.post(url, json=body, headers={"X-Saga-Callback-Token": token}, timeout=30)
    again = requests.post(url, json=body, headers={"X-Saga-Callback-Token": token}, timeout=30)

    assert wrong.status_code == 403
    assert answer.status_code == 202, answer.text
    assert again.status_code == 200
    wait_until(lambda: status_of(waiting).status == "completed", timeout=30)
    assert participants.received("POST", "/ship")[0].body == {"box": "B-7"}
    scraped = samples(api.get("/metrics", **{"X-API-Key": settings.INTERNAL_API_KEY}).text)
    counted = {
        labels: value for (name, labels), value in scraped.items() if name == "saga_callbacks_total"
    }
    assert counted[(("outcome", "succeeded"),)] == 1
    assert counted[(("outcome", "duplicate"),)] == 1
    assert counted[(("outcome", "forbidden"),)] == 1
    assert "SAGA waiting" in worker.log() and "SAGA callback_applied" in worker.log()
    assert "SAGA callback" in api.output_text()
    assert token not in worker.log() and token not in api.output_text()


def calls_back_first(api_holder: dict):
    """A participant that posts its callback, then answers 202: the callback reaches the
    API while the worker still waits for the call's answer."""

    def reply(request) -> Reply:
        url = request.header("X-Saga-Callback-Url")
        token = request.header("X-Saga-Callback-Token")
        body = {"outcome": "succeeded", "response": {"box": "B-fast"}}
        answer = requests.post(url, json=body, headers={"X-Saga-Callback-Token": token}, timeout=30)
        api_holder["callback_status"] = answer.status_code
        return Reply(202, {"accepted": True})

    return reply


def test_a_callback_sent_before_the_202_is_answered_is_applied(participants, service):
    api, worker = service
    seen = {}
    participants.script("POST", "/pick", calls_back_first(seen))
    register(api, warehouse(participants, name="eager"))

    saga_id = start(api, "eager", {"order": "A-2"})

    wait_until(lambda: status_of(saga_id).status == "completed", timeout=30)
    assert seen["callback_status"] == 202  # kept while the call was in flight
    assert participants.received("POST", "/ship")[0].body == {"box": "B-fast"}
    assert status_of(saga_id).callback is None


def test_many_waiting_sagas_and_their_callbacks_in_parallel(participants, service):
    """Twenty sagas wait at once on one worker thread; callbacks posted concurrently."""
    api, worker = service
    participants.script("POST", "/pick", Reply(202, {}))
    register(api, warehouse(participants, name="bulk"))
    ids = [start(api, "bulk", {"order": f"B-{n}"}) for n in range(20)]

    def all_waiting():
        return all(status_of(i).steps[0]["status"] == "waiting" for i in ids)

    wait_until(all_waiting, timeout=60, interval=0.2)
    calls = participants.received("POST", "/pick")
    answers = []

    def post(request):
        url, token = request.header("X-Saga-Callback-Url"), request.header("X-Saga-Callback-Token")
        body = {"outcome": "succeeded", "response": {"box": request.body["order"]}}
        answers.append(
            requests.post(
                url, json=body, headers={"X-Saga-Callback-Token": token}, timeout=30
            ).status_code
        )

    threads = [threading.Thread(target=post, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert answers == [202] * 20
    wait_until(
        lambda: SagaInstance.objects.filter(id__in=ids, status="completed").count() == 20,
        timeout=60,
        interval=0.2,
    )
    shipped = sorted(r.body["box"] for r in participants.received("POST", "/ship"))
    assert shipped == sorted(f"B-{n}" for n in range(20))
    assert all(saga_get(SagaInstance(id=i)).steps[0]["response"]["box"] for i in ids)
