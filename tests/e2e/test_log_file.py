"""JSON log file shared by several Gunicorn workers and a worker process, across rotation.

Rotation is what logrotate does without copytruncate: move the file away; every process's
WatchedFileHandler notices at its next line and opens a new file at the configured path.
"""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from tests.gunicorn_process import ROOT, child_env, gunicorn_start, json_lines

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

# A stand-in for `run_saga_worker`: a Django process logging through the same settings.
WORKER_SCRIPT = """
import logging, pathlib, sys, time
import django
django.setup()
log = logging.getLogger("sagas.engine")
stop = pathlib.Path(sys.argv[1])
while not stop.exists():
    log.info("SAGA tick", extra={"saga_id": "s-1", "step": "reserve", "phase": "action"})
    time.sleep(0.05)
"""


def access_pids(path) -> set[int]:
    lines = json_lines(path, growing=True)
    return {line["process"] for line in lines if line.get("event") == "http_request"}


def worker_lines(path) -> list[dict]:
    return [line for line in json_lines(path, growing=True) if line["message"] == "SAGA tick"]


def poll(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_log_file_lines_from_every_process_survive_rotation(tmp_path):
    log_file = tmp_path / "logs" / "saga_orchestrator.log"
    server = gunicorn_start(tmp_path, workers=3, LOG_FILE=str(log_file), LOG_LEVEL="INFO")
    stop = tmp_path / "stop-worker"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, str(stop)],
        cwd=ROOT,
        env=child_env(LOG_FILE=str(log_file), PROMETHEUS_MULTIPROC_DIR=""),
        stdout=subprocess.DEVNULL,
    )
    pool = ThreadPoolExecutor(max_workers=8)
    key = settings.INTERNAL_API_KEY
    try:
        workers = server.booted_pids()

        def make_requests() -> None:
            list(pool.map(lambda i: server.get(f"/nope-{i}", **{"X-API-Key": key}), range(24)))

        def every_worker_served(path) -> bool:
            make_requests()
            return workers <= access_pids(path)

        poll(lambda: every_worker_served(log_file))
        poll(lambda: worker_lines(log_file))

        rotated = log_file.with_name("saga_orchestrator.log.1")
        log_file.rename(rotated)
        poll(lambda: log_file.exists() and every_worker_served(log_file))
        poll(lambda: worker_lines(log_file))
    finally:
        stop.touch()
        worker.wait(timeout=30)
        pool.shutdown()
        server.stop()

    for path in (rotated, log_file):
        lines = json_lines(path)  # every line parses as JSON
        assert all(
            {"time", "level", "logger", "message", "process"} <= line.keys() for line in lines
        )
        assert key not in path.read_text()
    access = [line for line in json_lines(log_file) if line.get("event") == "http_request"]
    assert {"method", "path", "status", "duration_ms", "request_id"} <= access[0].keys()
    assert all(line["status"] == 404 and len(line["request_id"]) == 32 for line in access)
    saga_line = worker_lines(log_file)[0]
    assert saga_line["saga_id"] == "s-1" and saga_line["phase"] == "action"
    # The moved file kept what was written before the rotation.
    assert access_pids(rotated) >= server.booted_pids()


def test_request_id_from_the_client_is_logged_and_echoed(tmp_path):
    log_file = tmp_path / "app.log"
    server = gunicorn_start(tmp_path, workers=1, LOG_FILE=str(log_file))
    try:
        response = server.get("/nope", **{"X-Request-ID": "trace-abc.123"})
        assert response.headers["X-Request-ID"] == "trace-abc.123"
        poll(
            lambda: any(line.get("request_id") == "trace-abc.123" for line in json_lines(log_file))
        )
    finally:
        server.stop()
