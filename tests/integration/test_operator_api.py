"""Operator repair through the API (DESIGN §9.1, §9.2): pause, resume, cancel and retry with
a reason, the history, `run` in /logs/, `on_failure` in definitions, paused in the figures.

Sagas run for real: definitions posted through the API, started with the client key, a
worker driven a tick at a time against a scripted participant server.
"""

import json
import re
import threading
import time

import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from sagas.api.auth import key_id
from sagas.models import SagaInstance
from tests.participants import Reply
from tests.saga_builders import in_thread
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]

ORDER = {"order_id": "A-1", "address": "Main St"}
FIXED = {"address": "1 Main St"}
RETRY = {"max_attempts": 2, "delay_seconds": 0}


# Builders ----------------------------------------------------------------------------------


def ship(request) -> Reply:
    """The shipping participant: 422 for an address without a house number."""
    address = (request.body or {}).get("address") or ""
    if re.match(r"\d+ ", address):
        return Reply(201, {"id": "s-1", "address": address})
    return Reply(422, {"error": "address not deliverable"})


def repairable(participants, *, name: str = "repairable", **fields) -> dict:
    """reserve → ship → notify, pausing when an action fails for good; ship is rejected
    (422) until the input's address has a house number, notify uses ship's response."""
    url = participants.url
    participants.script("POST", "/reserve", Reply(201, {"id": "r-1"}))
    participants.script("POST", "/ship", ship)
    return {
        "name": name,
        "on_failure": "pause",
        "steps": [
            {
                "name": "reserve",
                "action": {"method": "POST", "url": url("/reserve"), "body": "${input}"},
                "compensation": {"method": "POST", "url": url("/release")},
                "retry": RETRY,
            },
            {
                "name": "ship",
                "action": {
                    "method": "POST",
                    "url": url("/ship"),
                    "body": {"address": "${input.address}"},
                },
                "compensation": {"method": "POST", "url": url("/unship")},
                "retry": RETRY,
            },
            {
                "name": "notify",
                "action": {
                    "method": "POST",
                    "url": url("/notify"),
                    "body": {"shipment": "${steps.ship.response.id}"},
                },
                "retry": RETRY,
            },
        ],
        **fields,
    }


def start(internal_api, client_api, definition: dict, saga_input: dict) -> str:
    assert internal_api.post("/api/saga-definitions/", definition, format="json").status_code in (
        200,
        201,
    )
    body = {"definition": definition["name"], "input": saga_input}
    response = client_api.post("/api/sagas/", body, format="json")
    assert response.status_code == 202, response.json()
    return response.json()["id"]


def run_until(worker, saga_id: str, *statuses: str, timeout: float = 10.0) -> SagaInstance:
    """Tick `worker` until the saga is in one of `statuses`."""

    def reached():
        if not worker.tick():
            time.sleep(0.005)
        saga = SagaInstance.objects.get(id=saga_id)
        return saga if saga.status in statuses else None

    return wait_until(reached, timeout=timeout, interval=0, what=f"status in {statuses}")


def paused_saga(participants, worker, internal_api, client_api, saga_input=None) -> str:
    """A saga paused on ship's 422: reserve succeeded, ship failed, notify not reached."""
    saga_id = start(internal_api, client_api, repairable(participants), saga_input or ORDER)
    run_until(worker, saga_id, "paused")
    return saga_id


def post(api, saga_id: str, action: str, body=None):
    """POST the action, with `body` as JSON text (escaped: a lone surrogate goes as
    `\\ud800`, as a client would send it) or no body at all."""
    url = f"/api/sagas/{saga_id}/{action}/"
    if body is None:
        return api.post(url)
    return api.post(url, data=json.dumps(body), content_type="application/json")


def history(api, saga_id: str) -> list[dict]:
    response = api.get(f"/api/sagas/{saga_id}/history/")
    assert response.status_code == 200
    return response.json()


def keys_sent(participants, path: str) -> list[str]:
    return [r.header("Idempotency-Key") for r in participants.received("POST", path)]


def snapshot(saga_id: str) -> tuple:
    saga = SagaInstance.objects.get(id=saga_id)
    return saga.status, saga.input, saga.steps, saga.current_step, saga.deadline_at


# Definitions: on_failure --------------------------------------------------------------------


def test_on_failure_is_normalised_onto_every_step(participants, internal_api):
    body = repairable(participants)
    body["steps"][0]["on_failure"] = "compensate"

    response = internal_api.post("/api/saga-definitions/", body, format="json")

    assert response.status_code == 201, response.json()
    stored = response.json()
    assert [s["on_failure"] for s in stored["steps"]] == ["compensate", "pause", "pause"]


def test_on_failure_defaults_to_compensate(participants, internal_api):
    body = repairable(participants)
    del body["on_failure"]

    stored = internal_api.post("/api/saga-definitions/", body, format="json").json()

    assert {s["on_failure"] for s in stored["steps"]} == {"compensate"}


@pytest.mark.parametrize("value", ["stop", "", None, 1, ["pause"]])
def test_an_unknown_on_failure_is_400_at_the_field(participants, internal_api, value):
    body = repairable(participants, on_failure=value)
    body["steps"][1]["on_failure"] = value

    response = internal_api.post("/api/saga-definitions/", body, format="json")

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["on_failure"] and errors["steps"]["1"]["on_failure"]


def test_the_same_on_failure_posted_twice_is_one_version(participants, internal_api):
    body = repairable(participants)
    first = internal_api.post("/api/saga-definitions/", body, format="json")
    implicit = {**body, "steps": [dict(s, on_failure="pause") for s in body["steps"]]}
    again = internal_api.post("/api/saga-definitions/", implicit, format="json")

    assert (first.status_code, again.status_code) == (201, 200)


# Pause, resume: the repair itself ---------------------------------------------------------


def test_a_rejected_step_pauses_and_a_patched_resume_completes_without_undoing(
    participants, worker, internal_api, client_api
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    paused = client_api.get(f"/api/sagas/{saga_id}/").json()
    assert [s["status"] for s in paused["steps"]] == ["succeeded", "failed", "pending"]
    assert paused["error"]["step"] == "ship"

    response = post(internal_api, saga_id, "resume", {"input_patch": FIXED, "reason": "fixed"})

    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "running"
    assert response.json()["input"] == {**ORDER, **FIXED}
    done = run_until(worker, saga_id, "completed", "compensated", "failed")
    assert done.status == "completed"
    assert len(participants.received("POST", "/reserve")) == 1
    assert participants.received("POST", "/release") == []
    assert keys_sent(participants, "/ship") == [
        f"{saga_id}:ship:action",
        f"{saga_id}:ship:action:2",
    ]
    assert participants.received("POST", "/ship")[1].body == FIXED
    assert participants.received("POST", "/notify")[0].body == {"shipment": "s-1"}


def test_logs_number_each_call_with_its_run(participants, worker, internal_api, client_api):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    post(internal_api, saga_id, "resume", {"input_patch": FIXED})
    run_until(worker, saga_id, "completed")

    logs = client_api.get(f"/api/sagas/{saga_id}/logs/").json()

    assert [(c["step"], c["run"], c["attempt"], c["status_code"]) for c in logs] == [
        ("reserve", 1, 1, 201),
        ("ship", 1, 1, 422),
        ("ship", 2, 1, 201),
        ("notify", 1, 1, 200),
    ]
    assert logs[2]["request_headers"]["Idempotency-Key"] == f"{saga_id}:ship:action:2"


def test_pause_of_a_running_saga_takes_effect_at_its_next_transition(
    participants, worker, internal_api, client_api
):
    body = repairable(participants)
    participants.script("POST", "/reserve", Reply(201, {"id": "r-1"}, delay=0.3))
    saga_id = start(internal_api, client_api, body, {**ORDER, **FIXED})
    ticking = in_thread(worker.tick)
    wait_until(lambda: participants.received("POST", "/reserve"))

    response = post(internal_api, saga_id, "pause", {"reason": "customer on the phone"})
    pending = post(internal_api, saga_id, "pause")  # the first is not applied yet
    ticking.join()

    assert response.status_code == 202
    assert response.json()["status"] == "running"
    assert response.json()["pause_requested"] is True
    assert pending.status_code == 409
    assert pending.json()["status"] == "running"
    paused = run_until(worker, saga_id, "paused")
    assert paused.steps[0]["status"] == "succeeded"  # the call in flight was recorded
    assert client_api.get(f"/api/sagas/{saga_id}/").json()["pause_requested"] is False
    assert participants.received("POST", "/ship") == []
    assert post(internal_api, saga_id, "pause").status_code == 409  # already paused
    assert post(internal_api, saga_id, "resume").status_code == 202
    assert run_until(worker, saga_id, "completed").status == "completed"
    assert len(participants.received("POST", "/ship")) == 1


def test_skip_marks_the_step_succeeded_with_the_response_later_steps_use(
    participants, worker, internal_api, client_api
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    skip = {"response": {"id": "by-hand"}}

    response = post(internal_api, saga_id, "resume", {"skip": skip, "reason": "shipped by hand"})

    assert response.status_code == 202, response.json()
    done = run_until(worker, saga_id, "completed")
    assert done.steps[1]["status"] == "succeeded"
    assert done.steps[1]["response"] == {"id": "by-hand"}
    assert len(participants.received("POST", "/ship")) == 1  # the rejected call only
    assert participants.received("POST", "/notify")[0].body == {"shipment": "by-hand"}
    resumed = [e for e in history(client_api, saga_id) if e["event"] == "resumed"]
    assert resumed[0]["details"]["skip"] == skip


def test_from_step_compensates_what_it_reruns_then_runs_forward(
    participants, worker, internal_api, client_api
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)

    response = post(internal_api, saga_id, "resume", {"from_step": "reserve", "input_patch": FIXED})

    assert response.status_code == 202, response.json()
    assert run_until(worker, saga_id, "completed").status == "completed"
    assert keys_sent(participants, "/reserve") == [
        f"{saga_id}:reserve:action",
        f"{saga_id}:reserve:action:2",
    ]
    assert len(participants.received("POST", "/release")) == 1


def test_cancel_of_a_paused_saga_compensates_and_ends_cancelled(
    participants, worker, internal_api, client_api
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)

    response = post(client_api, saga_id, "cancel", {"reason": "customer withdrew"})

    assert response.status_code == 202
    done = run_until(worker, saga_id, "cancelled", "failed")
    assert done.status == "cancelled"
    assert len(participants.received("POST", "/release")) == 1
    assert participants.received("POST", "/unship") == []  # a 422 took no effect
    requested = [e for e in history(client_api, saga_id) if e["event"] == "cancel_requested"]
    assert requested[0]["actor"] == "client"
    assert requested[0]["reason"] == "customer withdrew"
    assert requested[0]["key_id"] == key_id(settings.SAGA_API_KEY)


# The 202 / 409 / 403 / 400 matrix ---------------------------------------------------------


def finished_saga(participants, worker, internal_api, client_api) -> str:
    saga_id = start(internal_api, client_api, repairable(participants), {**ORDER, **FIXED})
    run_until(worker, saga_id, "completed")
    return saga_id


@pytest.mark.parametrize("body", [None, {}, {"reason": ""}, {"reason": "x" * 500}])
def test_pause_takes_no_body_an_empty_one_or_a_reason(participants, internal_api, client_api, body):
    saga_id = start(internal_api, client_api, repairable(participants), ORDER)

    response = post(internal_api, saga_id, "pause", body)

    assert response.status_code == 202, response.json()
    assert response.json()["id"] == saga_id


def test_an_empty_json_body_is_no_body(participants, internal_api, client_api):
    saga_id = start(internal_api, client_api, repairable(participants), ORDER)

    response = internal_api.post(
        f"/api/sagas/{saga_id}/pause/", data=b"", content_type="application/json"
    )

    assert response.status_code == 202


def test_pause_of_a_finished_saga_or_a_paused_one_is_409_with_its_status(
    participants, worker, internal_api, client_api
):
    finished = finished_saga(participants, worker, internal_api, client_api)
    paused = paused_saga(participants, worker, internal_api, client_api)

    for saga_id, current in ((finished, "completed"), (paused, "paused")):
        response = post(internal_api, saga_id, "pause", {"reason": "again"})
        assert response.status_code == 409
        assert response.json()["code"] == "conflict"
        assert response.json()["status"] == current


def test_pause_while_compensating_or_after_a_cancel_is_409(
    participants, worker, internal_api, client_api
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    participants.script("POST", "/release", Reply(503, {}))
    assert post(client_api, saga_id, "cancel").status_code == 202
    assert post(internal_api, saga_id, "pause").status_code == 409  # a cancel was accepted

    run_until(worker, saga_id, "compensating", "failed")

    response = post(internal_api, saga_id, "pause")
    assert response.status_code == 409
    assert response.json()["status"] in ("compensating", "failed")


def test_a_saga_no_worker_holds_pauses_at_once(participants, internal_api, client_api):
    saga_id = start(internal_api, client_api, repairable(participants), ORDER)

    first = post(internal_api, saga_id, "pause")
    second = post(internal_api, saga_id, "pause")

    assert first.status_code == 202
    assert first.json()["status"] == "paused"
    assert second.status_code == 409
    assert second.json()["status"] == "paused"


def test_resume_of_a_saga_that_is_not_paused_is_409(participants, worker, internal_api, client_api):
    finished = finished_saga(participants, worker, internal_api, client_api)
    pending = start(internal_api, client_api, repairable(participants), ORDER)

    for saga_id in (pending, finished):
        response = post(internal_api, saga_id, "resume", {"reason": "go"})
        assert response.status_code == 409
        assert response.json()["status"] == SagaInstance.objects.get(id=saga_id).status


@pytest.mark.parametrize("action", ["pause", "resume", "retry"])
def test_the_client_key_may_not_pause_resume_or_retry(
    participants, worker, internal_api, client_api, action
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    before = snapshot(saga_id)

    response = post(client_api, saga_id, action, {"reason": "mine"})

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert snapshot(saga_id) == before
    assert APIClient().post(f"/api/sagas/{saga_id}/{action}/").status_code == 401


def test_retry_with_a_reason_is_on_the_history(participants, worker, internal_api, client_api):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    participants.script("POST", "/release", Reply(503, {}))
    post(client_api, saga_id, "cancel")
    run_until(worker, saga_id, "failed", timeout=30)
    participants.script("POST", "/release", Reply(200, {}))

    response = post(internal_api, saga_id, "retry", {"reason": "inventory is back"})

    assert response.status_code == 202
    assert run_until(worker, saga_id, "cancelled").status == "cancelled"
    retried = [e for e in history(client_api, saga_id) if e["event"] == "retried"]
    assert retried[0]["reason"] == "inventory is back"
    assert retried[0]["actor"] == "internal"


BAD_BODIES = [
    ({"from_stpe": "ship"}, "from_stpe"),
    ({"from_step": 3}, "from_step"),
    ({"from_step": ["ship"]}, "from_step"),
    ({"input_patch": None}, "input_patch"),
    ({"skip": "yes"}, "skip"),
    ({"skip": {}}, "skip"),
    ({"skip": {"response": {}, "status": 200}}, "skip"),
    ({"skip": {"response": "a\u0000b"}}, "skip"),
    ({"reason": 5}, "reason"),
    ({"reason": "x" * 501}, "reason"),
    ({"reason": "a\x00b"}, "reason"),
    ([], "non_field_errors"),
    ("resume", "non_field_errors"),
]


@pytest.mark.parametrize("body, field", BAD_BODIES)
def test_a_malformed_resume_body_is_400_naming_the_field_and_changes_nothing(
    participants, worker, internal_api, client_api, body, field
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    before, events = snapshot(saga_id), history(client_api, saga_id)

    response = post(internal_api, saga_id, "resume", body)

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert field in response.json()["errors"]
    assert snapshot(saga_id) == before
    assert history(client_api, saga_id) == events


@pytest.mark.parametrize("action", ["cancel", "retry", "pause"])
@pytest.mark.parametrize(
    "body, field", [({"reason": "x" * 501}, "reason"), ({"why": "x"}, "why"), ([], None)]
)
def test_a_malformed_reason_body_is_400(
    participants, internal_api, client_api, action, body, field
):
    saga_id = start(internal_api, client_api, repairable(participants), ORDER)
    before = snapshot(saga_id)

    response = post(internal_api, saga_id, action, body)

    assert response.status_code == 400
    assert field is None or field in response.json()["errors"]
    assert snapshot(saga_id) == before


def test_a_reason_body_over_16_kib_is_413(participants, internal_api, client_api):
    saga_id = start(internal_api, client_api, repairable(participants), ORDER)

    response = post(internal_api, saga_id, "pause", {"reason": "x" * 17000})

    assert response.status_code == 413


def deep(levels: int):
    value = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def bad_patches() -> list:
    return [
        pytest.param([{"address": "1 Main St"}], id="a list"),
        pytest.param("1 Main St", id="a string"),
        pytest.param(7, id="a number"),
        pytest.param({"address": deep(20)}, id="too deep"),
        pytest.param({"address": "1 Main\u0000St"}, id="NUL"),
        pytest.param({"address": "\ud800"}, id="lone surrogate"),
    ]


@pytest.mark.parametrize("patch", bad_patches())
def test_a_patch_that_is_not_an_object_or_too_deep_is_400_and_changes_nothing(
    participants, worker, internal_api, client_api, patch
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    before, events = snapshot(saga_id), history(client_api, saga_id)

    response = post(internal_api, saga_id, "resume", {"input_patch": patch})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["input_patch"]
    assert snapshot(saga_id) == before
    assert history(client_api, saga_id) == events


def test_a_patch_making_the_input_too_large_is_400_and_changes_nothing(
    participants, worker, internal_api, client_api, settings
):
    settings.SAGA_MAX_INPUT_BYTES = 4000
    saga_id = paused_saga(
        participants, worker, internal_api, client_api, {**ORDER, "note": "n" * 2500}
    )
    before = snapshot(saga_id)

    response = post(internal_api, saga_id, "resume", {"input_patch": {"more": "m" * 2500}})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["input_patch"]
    assert snapshot(saga_id) == before
    too_big = post(internal_api, saga_id, "resume", {"input_patch": {"more": "m" * 5000}})
    assert too_big.status_code == 413
    assert snapshot(saga_id) == before


def test_a_resume_body_may_be_as_large_as_a_start(participants, worker, internal_api, client_api):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    note = "n" * (settings.SAGA_MAX_INPUT_BYTES // 2)

    response = post(internal_api, saga_id, "resume", {"input_patch": {**FIXED, "note": note}})

    assert response.status_code == 202, response.json()
    assert response.json()["input"]["note"] == note


@pytest.mark.parametrize(
    "body, field",
    [
        ({"from_step": "unknown"}, "from_step"),
        ({"from_step": "notify"}, "from_step"),  # after the step where it stopped
        ({"from_step": "reserve", "skip": {"response": {}}}, "skip"),
    ],
)
def test_a_from_step_it_cannot_rewind_to_is_400_and_changes_nothing(
    participants, worker, internal_api, client_api, body, field
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    before, events = snapshot(saga_id), history(client_api, saga_id)

    response = post(internal_api, saga_id, "resume", body)

    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert snapshot(saga_id) == before
    assert history(client_api, saga_id) == events


def test_unknown_saga_is_404_for_every_action(internal_api):
    missing = "0b6f7c1e-8d2a-4f51-9a43-3c1d5e7f9a10"
    for action in ("pause", "resume", "cancel", "retry"):
        assert post(internal_api, missing, action).status_code == 404
    assert internal_api.get(f"/api/sagas/{missing}/history/").status_code == 404
    assert internal_api.get("/api/sagas/not-a-uuid/history/").status_code == 404


# History ------------------------------------------------------------------------------------


def test_history_tells_the_repair_in_order_with_who_and_why(
    participants, worker, internal_api, client_api
):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    post(internal_api, saga_id, "resume", {"input_patch": FIXED, "reason": "fixed with customer"})
    run_until(worker, saga_id, "completed")

    events = history(client_api, saga_id)

    assert [(e["event"], e["step"]) for e in events] == [
        ("started", None),
        ("step_succeeded", "reserve"),
        ("step_failed", "ship"),
        ("paused", "ship"),
        ("resumed", None),
        ("step_succeeded", "ship"),
        ("step_succeeded", "notify"),
        ("finished", None),
    ]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    resumed = events[4]
    assert resumed["actor"] == "internal"
    assert resumed["key_id"] == key_id(settings.INTERNAL_API_KEY)
    assert re.fullmatch(r"[0-9a-f]{8}", resumed["key_id"])
    assert resumed["reason"] == "fixed with customer"
    assert resumed["details"]["input_patch"] == FIXED
    assert {e["actor"] for e in events if e["event"] != "resumed"} <= {"system", "client"}
    assert set(events[0]) == {"at", "event", "step", "actor", "key_id", "reason", "details"}


def test_an_operator_pause_is_on_the_history_with_its_reason(
    participants, worker, internal_api, client_api
):
    saga_id = start(internal_api, client_api, repairable(participants), {**ORDER, **FIXED})

    post(internal_api, saga_id, "pause", {"reason": "fraud check"})
    run_until(worker, saga_id, "paused")

    paused = [e for e in history(client_api, saga_id) if e["event"] == "paused"]
    assert paused[-1]["actor"] == "internal"
    assert paused[-1]["reason"] == "fraud check"
    assert paused[-1]["key_id"] == key_id(settings.INTERNAL_API_KEY)


def test_the_service_keys_appear_in_no_answer(participants, worker, internal_api, client_api):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    answers = [
        post(internal_api, saga_id, "resume", {"input_patch": FIXED, "reason": "ok"}).content,
    ]
    run_until(worker, saga_id, "completed")
    for path in ("", "logs/", "history/"):
        answers.append(client_api.get(f"/api/sagas/{saga_id}/{path}").content)
        answers.append(internal_api.get(f"/api/sagas/{saga_id}/{path}").content)
    text = b"".join(answers).decode()

    for key in (settings.SAGA_API_KEY, settings.INTERNAL_API_KEY):
        assert key not in text
        assert json.dumps(key)[1:-1] not in text


# Figures ------------------------------------------------------------------------------------


def test_paused_sagas_are_counted_listed_and_in_the_metrics(
    participants, worker, internal_api, client_api
):
    before = scrape(internal_api)
    saga_id = paused_saga(participants, worker, internal_api, client_api)

    counts = APIClient().get("/api/sagas/status/").json()["sagas"]
    listed = client_api.get("/api/sagas/?status=paused").json()
    after = scrape(internal_api)

    assert counts["paused"] == 1
    assert [s["id"] for s in listed["results"]] == [saga_id]
    assert after[("saga_waiting", (("status", "paused"),))] == 1
    assert before.get(("saga_waiting", (("status", "paused"),))) == 0


def test_each_accepted_action_is_counted_once(participants, worker, internal_api, client_api):
    first = paused_saga(participants, worker, internal_api, client_api)
    second = start(internal_api, client_api, repairable(participants, name="second"), ORDER)
    before = scrape(internal_api)

    post(internal_api, first, "resume", {"skip": {"response": {"id": "x"}}})
    post(internal_api, first, "resume")  # 409: running now, not counted
    post(internal_api, second, "pause")
    post(client_api, second, "cancel")
    after = scrape(internal_api)

    def delta(action):
        key = ("saga_operator_actions_total", (("action", action),))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert [delta(a) for a in ("skip", "resume", "pause", "cancel", "retry")] == [1, 0, 1, 1, 0]


def scrape(internal_api) -> dict[tuple, float]:
    response = internal_api.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


# Concurrency --------------------------------------------------------------------------------


@pytest.mark.not_on_sqlite("two requests at once need row locks; SQLite writers take turns")
def test_two_resumes_at_once_give_exactly_one_202(participants, worker, internal_api, client_api):
    saga_id = paused_saga(participants, worker, internal_api, client_api)
    barrier = threading.Barrier(2)
    codes = []

    def resume():
        api = APIClient()
        api.credentials(HTTP_X_API_KEY=settings.INTERNAL_API_KEY)
        barrier.wait()
        codes.append(post(api, saga_id, "resume", {"input_patch": FIXED}).status_code)

    threads = [in_thread(resume) for _ in range(2)]
    for thread in threads:
        thread.join(timeout=10)

    assert sorted(codes) == [202, 409]
    resumed = [e for e in history(client_api, saga_id) if e["event"] == "resumed"]
    assert len(resumed) == 1
    assert run_until(worker, saga_id, "completed").status == "completed"
    assert len(participants.received("POST", "/ship")) == 2
