"""/health/ and /health/detailed/: open, and honest about each dependency."""

import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from sagas.api import throttling
from sagas.models import WorkerHeartbeat
from tests.security_helpers import throwaway_redis

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_worker() -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker_id="w1", hostname="h", pid=1, started_at=now, last_seen_at=now
    )


def detailed():
    return APIClient().get("/health/detailed/")


def test_liveness_touches_no_dependency():
    # No django_db mark: any database access here would fail the test.
    response = APIClient().get("/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_detailed_is_ok_with_database_redis_and_a_worker():
    live_worker()

    response = detailed()

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    checks = body["checks"]
    assert checks["database"]["status"] == "ok"
    assert checks["redis"]["status"] == "ok"
    assert checks["workers"] == {
        "status": "ok",
        "alive": 1,
        "latency_ms": pytest.approx(0, abs=1e4),
    }
    for name in ("database", "redis"):
        assert isinstance(checks[name]["latency_ms"], float)


@pytest.mark.django_db
def test_no_live_worker_is_degraded_not_down():
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker_id="old", hostname="h", pid=1, started_at=now, last_seen_at=now - timedelta(hours=1)
    )

    response = detailed()

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["workers"]["status"] == "down"


@pytest.mark.django_db
def test_redis_unreachable_is_degraded(settings):
    live_worker()
    settings.REDIS_PORT = closed_port()

    started = time.monotonic()
    response = detailed()

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["redis"]["status"] == "down"
    assert response.json()["checks"]["database"]["status"] == "ok"
    assert time.monotonic() - started < 2


@pytest.mark.django_db
def test_redis_answering_but_refusing_writes_is_degraded(settings):
    """A read-only replica answers PING but refuses the limiter's INCR: requests pass
    uncounted, and health says so at once (it probes with a write), traffic or not."""
    live_worker()
    with throwaway_redis("--replicaof", "127.0.0.1", str(closed_port())) as (_, port):
        settings.REDIS_PORT, settings.REDIS_DB = port, 0
        first = detailed()
        api = APIClient()
        api.credentials(HTTP_X_API_KEY=settings.SAGA_API_KEY)
        assert api.get("/api/sagas/").status_code == 200  # passes, uncounted
        assert throttling.rate_limit_degraded()

        response = detailed()

    assert first.json()["checks"]["redis"]["status"] == "degraded"
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["redis"]["status"] == "degraded"


@pytest.mark.django_db
def test_without_redis_configured_redis_is_disabled_and_not_degrading(settings):
    live_worker()
    settings.REDIS_HOST = ""

    body = detailed().json()

    assert body["checks"]["redis"] == {"status": "disabled", "latency_ms": None}
    assert body["status"] == "ok"


def test_postgresql_unreachable_is_503_quickly_and_the_api_answers_json_503():
    """In a child process whose DB_PORT is closed (the shared server is never touched)."""
    script = """
import json, django
django.setup()
from django.test import Client
client = Client()
out = {}
for path in ("/health/detailed/", "/health/", "/api/sagas/status/"):
    response = client.get(path)
    out[path] = [response.status_code, response["Content-Type"], response.json()]
response = client.get("/api/sagas/", HTTP_X_API_KEY="test-saga-key")
out["/api/sagas/"] = [response.status_code, response["Content-Type"], response.json()]
print(json.dumps(out))
"""
    env = {
        **os.environ,
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(closed_port()),
        "DB_CONNECT_TIMEOUT": "2",
        "DJANGO_SETTINGS_MODULE": "saga_orchestrator.settings",
        "SAGA_API_KEY": "test-saga-key",
        "LOG_FILE": "",
        "LOG_LEVEL": "CRITICAL",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    status, content_type, body = out["/health/detailed/"]
    assert status == 503
    assert body["status"] == "down"
    assert body["checks"]["database"]["status"] == "down"
    assert body["checks"]["workers"]["status"] == "unknown"
    assert out["/health/"][0] == 200
    for path in ("/api/sagas/status/", "/api/sagas/"):
        assert out[path][0] == 503
        assert out[path][1] == "application/json"
        assert out[path][2]["code"] == "service_unavailable"
    assert elapsed < 20
