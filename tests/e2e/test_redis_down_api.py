"""Redis dying under a running API (Gunicorn, several workers): every request still answers
fast — the rate limiter, the request figures, the health probe and the status page all use
the one fail-fast client (sagas/redis_client.py), never redis-py's multi-second retries."""

import time

import pytest
from django.conf import settings

from sagas.observability.request_stats import FLUSH_SECONDS
from tests.gunicorn_process import gunicorn_start
from tests.security_helpers import throwaway_redis

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

FAST = 0.5  # seconds; redis-py's default retries would take 3–5 s per request


def timed(server, path, **headers):
    started = time.monotonic()
    response = server.get(path, **headers)
    return response, time.monotonic() - started


def test_requests_stay_fast_when_redis_is_killed(tmp_path):
    key = {"X-API-Key": settings.SAGA_API_KEY}
    with throwaway_redis() as (redis_process, port):
        server = gunicorn_start(tmp_path, workers=2, REDIS_PORT=str(port), REDIS_DB="0")
        try:
            response, _ = timed(server, "/api/sagas/", **key)
            assert response.status_code == 200 and "X-RateLimit-Limit" in response.headers
            redis_process.kill()  # by its PID: the shared Redis is never touched
            redis_process.wait(timeout=10)

            slowest = 0.0
            for _ in range(20):
                response, took = timed(server, "/api/sagas/", **key)
                assert response.status_code == 200  # availability first
                slowest = max(slowest, took)
            health, health_took = timed(server, "/health/detailed/")
            status, status_took = timed(server, "/api/sagas/status/")
        finally:
            server.stop()

    assert slowest < FAST, slowest
    assert health.status_code == 200 and health_took < FAST
    assert health.json()["checks"]["redis"]["status"] == "down"
    assert health.json()["status"] == "degraded"
    assert status.status_code == 200 and status_took < FAST
    assert status.json()["dependencies"]["redis"] == "down"
    assert status.json()["status"] == "degraded"


def test_status_api_figures_add_up_across_gunicorn_workers(tmp_path):
    with throwaway_redis() as (_, port):  # an empty Redis: these requests only
        server = gunicorn_start(tmp_path, workers=3, REDIS_PORT=str(port), REDIS_DB="0")
        try:
            time.sleep(FLUSH_SECONDS + 0.2)  # the start-up probes' figures reach Redis
            before = server.get("/api/sagas/status/").json()["api"]
            for n in range(30):
                response = server.get(f"/no-such-page-{n}")
                assert response.status_code == 404
            # Another worker's figures reach Redis within its flush interval, so each poll
            # waits one interval out: the k-th poll must then see exactly the requests
            # answered before it (the first status page, the 30 404s, the k - 1 polls):
            # none lost, none counted twice.
            seen, deadline = [], time.monotonic() + 15
            while time.monotonic() < deadline:
                after = server.get("/api/sagas/status/").json()["api"]
                seen.append(after["requests"] - before["requests"] - 30 - len(seen))
                if seen[-1] == 1:
                    break
                time.sleep(FLUSH_SECONDS + 0.2)
            workers = server.booted_pids()
        finally:
            server.stop()

    assert len(workers) >= 3  # each answer came from any of them
    assert after["scope"] == "cluster"
    assert seen[-1] == 1, seen
    assert max(seen) == 1, seen  # never more than was answered
    assert after["error_rate"] == 0.0


def test_health_reports_redis_ok_within_5_s_of_its_return_without_other_traffic(tmp_path):
    """One Gunicorn worker, so every request meets the same process: limited requests
    during the outage open its breaker; after the restart only health is asked."""
    key = {"X-API-Key": settings.SAGA_API_KEY}
    with throwaway_redis() as (redis_process, port):
        server = gunicorn_start(tmp_path, workers=1, REDIS_PORT=str(port), REDIS_DB="0")
        try:
            assert server.get("/health/detailed/").json()["checks"]["redis"]["status"] == "ok"
            redis_process.kill()
            redis_process.wait(timeout=10)
            for _ in range(5):
                assert server.get("/api/sagas/", **key).status_code == 200  # uncounted
            down = server.get("/health/detailed/").json()
            with throwaway_redis(port=port):
                back_at = time.monotonic()
                states = []
                while time.monotonic() - back_at < 5 and states[-1:] != ["ok"]:
                    states.append(
                        server.get("/health/detailed/").json()["checks"]["redis"]["status"]
                    )
                    time.sleep(0.2)
                took = time.monotonic() - back_at
        finally:
            server.stop()

    assert down["checks"]["redis"]["status"] == "down" and down["status"] == "degraded"
    assert states[-1] == "ok", states
    assert took < 5
