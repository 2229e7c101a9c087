"""A realistic session — Gunicorn (several workers) and a saga worker writing LOG_FILE and
stdout/stderr at DEBUG, requests with both keys, wrong keys and no key, a saga through a
real participant (with a retry) — then every byte of log output is searched for the keys."""

import uuid

import pytest
import requests

from sagas.models import SagaInstance
from tests.e2e.workers import WorkerProcess
from tests.gunicorn_process import gunicorn_start
from tests.participants import ParticipantServer, Reply
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_no_log_output_contains_a_key(tmp_path):
    client_key, internal_key = f"client-{uuid.uuid4().hex}", f"internal-{uuid.uuid4().hex}"
    wrong_key = f"guess-{uuid.uuid4().hex}"
    keys = {"SAGA_API_KEY": client_key, "INTERNAL_API_KEY": internal_key, "LOG_LEVEL": "DEBUG"}
    log_file = tmp_path / "saga_orchestrator.log"
    participants = ParticipantServer()
    participants.script("POST", "/pay", Reply(503, {"error": "busy"}), Reply(201, {"id": "p-1"}))
    server = gunicorn_start(tmp_path, workers=2, LOG_FILE=str(log_file), **keys)
    worker = WorkerProcess(tmp_path, LOG_FILE=str(log_file), **keys)

    def call(method, path, key=None, **kwargs):
        headers = {"X-API-Key": key} if key else {}
        return requests.request(
            method, server.base_url + path, headers=headers, timeout=30, **kwargs
        )

    try:
        definition = {
            "name": "keyed",
            "steps": [
                {
                    "name": "pay",
                    "action": {
                        "method": "POST",
                        "url": participants.url("/pay"),
                        "headers": {"X-Tenant": "${input.tenant}"},
                        "body": "${input}",
                    },
                    "retry": {"max_attempts": 3, "delay_seconds": 0},
                }
            ],
        }
        assert call("POST", "/api/saga-definitions/", internal_key, json=definition).ok
        unknown = call("POST", "/api/sagas/", client_key, json={"definition": "nope"})
        assert unknown.status_code == 400
        # No input.tenant: the step fails for good in the worker (logged as such).
        unresolved = call("POST", "/api/sagas/", client_key, json={"definition": "keyed"})
        assert unresolved.status_code == 202
        started = call(
            "POST",
            "/api/sagas/",
            client_key,
            json={"definition": "keyed", "input": {"tenant": "acme"}},
        )
        assert started.status_code == 202, started.text
        saga_id = started.json()["id"]
        assert call("GET", f"/api/sagas/{saga_id}/", client_key).ok
        assert call("GET", "/metrics", internal_key).ok
        assert call("GET", "/metrics", client_key).status_code == 403
        assert call("POST", f"/api/sagas/{saga_id}/retry/", client_key).status_code == 403
        assert call("GET", "/api/sagas/", wrong_key).status_code == 401
        assert call("GET", "/api/sagas/").status_code == 401
        assert call("GET", "/api/sagas/", client_key + "x").status_code == 401
        assert call("POST", "/api/sagas/", client_key, data="{not json").status_code in (400, 415)
        assert call("GET", "/health/detailed/").status_code == 200

        def finished():
            ids = (saga_id, unresolved.json()["id"])
            statuses = set(SagaInstance.objects.filter(id__in=ids).values_list("status"))
            return statuses == {("completed",), ("compensated",)}

        wait_until(finished, timeout=30, interval=0.1)
        assert len(participants.received("POST", "/pay")) == 2  # a retry was logged too
        assert participants.received("POST", "/pay")[0].header("X-API-Key") is None
    finally:
        worker.close()
        server.stop()
        participants.close()

    outputs = {
        "LOG_FILE": log_file.read_text(errors="replace"),
        "gunicorn stdout/stderr": server.output_text(),
        "worker stdout/stderr": worker.log(),
    }
    assert "SAGA finished" in outputs["LOG_FILE"]  # the session was really logged
    assert '"status": 401' in outputs["LOG_FILE"]
    for where, text in outputs.items():
        for secret in (client_key, internal_key, wrong_key):
            assert secret not in text, f"a key appears in {where}"
        # Not even a recognisable part of one.
        for secret in (client_key, internal_key):
            assert secret.split("-", 1)[1][:12] not in text, f"part of a key in {where}"
