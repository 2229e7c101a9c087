"""Saga metrics end to end: sagas started through Gunicorn (several workers) and run by a
real saga worker process are counted exactly in `/metrics`, whichever Gunicorn worker
answers the scrape, and stay counted after the saga worker exits."""

import os
import signal
import socket

import pytest
import requests
from django.conf import settings

from sagas.models import TERMINAL_STATUSES, SagaInstance
from tests.e2e.test_metrics_multiprocess import samples
from tests.e2e.workers import WorkerProcess
from tests.gunicorn_process import gunicorn_start
from tests.participants import ParticipantServer, Reply
from tests.saga_builders import charge_or_decline, reserve_and_charge
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OK, FAILING = 8, 4


def api_post(server, path, body, key, **headers):
    headers = {"X-API-Key": key, **headers}
    return requests.post(server.base_url + path, json=body, headers=headers, timeout=30)


def scrape(server) -> dict:
    response = server.get("/metrics", **{"X-API-Key": settings.INTERNAL_API_KEY})
    assert response.status_code == 200, response.text
    return samples(response.text)


def expected_counts() -> dict:
    calls = "saga_participant_calls_total"
    return {
        ("saga_started_total", ()): OK + FAILING,
        ("saga_finished_total", (("status", "completed"),)): OK,
        ("saga_finished_total", (("status", "compensated"),)): FAILING,
        ("saga_duration_seconds_count", ()): OK + FAILING,
        # Every saga reserves once, after one busy answer for the first saga.
        (calls, (("outcome", "succeeded"), ("phase", "action"))): 2 * OK + FAILING,
        (calls, (("outcome", "retryable_error"), ("phase", "action"))): 1,
        (calls, (("outcome", "permanent_error"), ("phase", "action"))): FAILING,
        (calls, (("outcome", "succeeded"), ("phase", "compensation"))): FAILING,
        ("saga_step_duration_seconds_count", (("phase", "action"),)): 2 * OK + 2 * FAILING + 1,
        ("saga_step_duration_seconds_count", (("phase", "compensation"),)): FAILING,
    }


def test_saga_counters_are_exact_across_gunicorn_and_saga_workers(tmp_path):
    metrics_dir = tmp_path / "prometheus"
    participants = ParticipantServer()
    participants.script("POST", "/reserve", Reply(503, {"error": "busy"}), Reply(200, {}))
    participants.script("POST", "/charge", charge_or_decline)
    server = gunicorn_start(tmp_path, workers=3, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    worker = WorkerProcess(tmp_path, concurrency=2, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        created = api_post(
            server,
            "/api/saga-definitions/",
            reserve_and_charge(participants, name="metered", max_attempts=3),
            settings.INTERNAL_API_KEY,
        )
        assert created.status_code == 201, created.text
        ids = []
        for n in range(OK + FAILING):
            body = {"definition": "metered", "input": {"n": n, "decline": n >= OK}}
            started = api_post(
                server, "/api/sagas/", body, settings.SAGA_API_KEY, **{"Idempotency-Key": f"k{n}"}
            )
            assert started.status_code == 202, started.text
            ids.append(started.json()["id"])
            # The same key and body again: the same saga, not a new start.
            replay = api_post(
                server, "/api/sagas/", body, settings.SAGA_API_KEY, **{"Idempotency-Key": f"k{n}"}
            )
            assert replay.status_code == 200

        def all_finished() -> bool:
            sagas = SagaInstance.objects.filter(id__in=ids, status__in=TERMINAL_STATUSES)
            return sagas.count() == len(ids)

        wait_until(all_finished, timeout=60, interval=0.1)
        expected = expected_counts()
        # The finish is counted just after its transition commits: allow that instant.
        wait_until(lambda: _subset(scrape(server), expected), timeout=10, interval=0.05)
        for _ in range(12):  # any Gunicorn worker answers with the same exact figures
            assert _subset(scrape(server), expected)

        worker_pid = worker.process.pid
        host_dir = metrics_dir / f"host-{socket.gethostname()}"
        # The saga worker counted into its own files and is seen with its memory and CPU.
        assert any(name.endswith(f"_{worker_pid}.db") for name in os.listdir(host_dir))
        memory = "saga_process_resident_memory_bytes"
        assert scrape(server)[(memory, (("pid", str(worker_pid)), ("role", "worker")))] > 0
        worker.signal(signal.SIGTERM)
        assert worker.process.wait(timeout=30) == 0
        # At its exit its counts moved into the archive: its files are gone, no count lost.
        assert not any(name.endswith(f"_{worker_pid}.db") for name in os.listdir(host_dir))
        assert (metrics_dir / "archive" / "counter_archive.db").exists()
        assert _subset(scrape(server), expected)
        assert (memory, (("pid", str(worker_pid)), ("role", "worker"))) not in scrape(server)
    finally:
        worker.close()
        server.stop()
        participants.close()


def _subset(scraped: dict, expected: dict) -> bool:
    return all(scraped.get(key) == value for key, value in expected.items())
