"""GET /api/sagas/status/: open; totals per status; last-hour rates; workers; alerts."""

import os
import re
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from saga_orchestrator import process_usage
from sagas import redis_client
from sagas.models import WorkerHeartbeat
from sagas.observability import process_metrics, request_stats
from tests.api_builders import finished_saga, post_definition, saga_row
from tests.security_helpers import throwaway_redis

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_request_figures(monkeypatch):
    """This test's API figures only: its own Redis buckets and in-process buckets (other
    tests share the Redis database and this process)."""
    monkeypatch.setattr(request_stats, "REDIS_KEY_PREFIX", f"saga:api:test-{uuid.uuid4().hex}:")
    monkeypatch.setattr(request_stats, "_local", request_stats._LocalBuckets())
    redis_client.breaker_for.cache_clear()  # Redis believed healthy


@pytest.fixture
def checkout(internal_api):
    post_definition(internal_api)


def status_page() -> dict:
    response = APIClient().get("/api/sagas/status/")  # no key: the page is open
    assert response.status_code == 200
    return response.json()


def heartbeat(worker_id: str, seconds_ago: float) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker_id=worker_id,
        hostname="h",
        pid=1,
        started_at=now - timedelta(hours=1),
        last_seen_at=now - timedelta(seconds=seconds_ago),
    )


def test_empty_service_is_ok_with_null_rates():
    heartbeat("w", 0)
    page = status_page()

    assert page["status"] == "ok"
    assert page["sagas"] == {
        "pending": 0, "running": 0, "compensating": 0, "completed": 0,
        "compensated": 0, "cancelled": 0, "failed": 0, "paused": 0,
    }  # fmt: skip
    assert page["success_rate"] is None
    assert page["compensation_rate"] is None
    assert page["avg_duration_ms"] is None
    assert page["p95_duration_ms"] is None
    assert page["alerts"] == []
    assert page["workers"] == {"alive": 1}
    assert page["dependencies"] == {"redis": "ok", "workers": "ok"}
    assert page["api"] == {
        "requests": 0, "error_rate": None, "avg_response_ms": None, "scope": "cluster",
    }  # fmt: skip


def test_counts_are_totals_and_rates_cover_the_last_hour(checkout):
    heartbeat("w", 0)
    saga_row()
    for _ in range(19):
        finished_saga("completed", duration_s=2)
    finished_saga("compensated", duration_s=4)
    finished_saga("cancelled", duration_s=10)
    finished_saga("compensated", minutes_ago=90)  # counted in totals, not in rates

    page = status_page()

    assert page["sagas"]["pending"] == 1
    assert page["sagas"]["completed"] == 19
    assert page["sagas"]["compensated"] == 2
    assert page["success_rate"] == 0.95
    assert page["compensation_rate"] == 0.05
    assert page["avg_duration_ms"] == pytest.approx((19 * 2 + 4 + 10) / 21 * 1000, abs=1)
    assert page["finished_last_hour"] == 21
    assert page["status"] == "ok"
    assert page["alerts"] == []


def test_thresholds_raise_alerts_and_degrade(checkout):
    for _ in range(8):
        finished_saga("completed", duration_s=400)
    finished_saga("compensated", duration_s=400)
    finished_saga("failed", duration_s=400)

    page = status_page()

    assert page["status"] == "degraded"
    alerts = {alert["name"]: alert for alert in page["alerts"]}
    assert set(alerts) == {"success_rate_low", "compensation_rate_high", "saga_duration_high"}
    assert alerts["success_rate_low"]["value"] == 0.8
    assert alerts["success_rate_low"]["threshold"] == 0.95
    assert alerts["compensation_rate_high"]["value"] == 0.2


def test_workers_alive_counts_recent_heartbeats(settings):
    settings.SAGA_WORKER_HEARTBEAT_SECONDS = 10
    heartbeat("fresh", 5)
    heartbeat("late-but-alive", 25)
    heartbeat("dead", 31)

    assert status_page()["workers"] == {"alive": 2}


def alert_names(page: dict) -> set[str]:
    return {alert["name"] for alert in page["alerts"]}


def test_no_live_worker_is_a_dependency_down_and_degrades():
    heartbeat("dead", 3600)

    page = status_page()

    assert page["dependencies"]["workers"] == "down"
    assert page["alerts"] == []
    assert page["status"] == "degraded"


def test_p95_duration_is_the_nearest_rank_percentile(checkout):
    heartbeat("w", 0)
    for seconds in range(1, 21):  # 1 s … 20 s
        finished_saga("completed", duration_s=seconds)

    page = status_page()

    assert page["p95_duration_ms"] == pytest.approx(19_000, abs=1)
    assert page["avg_duration_ms"] == pytest.approx(10_500, abs=1)


def test_success_rate_threshold(checkout):
    heartbeat("w", 0)
    for _ in range(19):
        finished_saga("completed")
    finished_saga("compensated")
    assert "success_rate_low" not in alert_names(status_page())  # exactly 95 %

    finished_saga("failed")
    page = status_page()
    assert "success_rate_low" in alert_names(page)  # 19 / 21
    assert page["status"] == "degraded"


def test_compensation_rate_threshold(checkout):
    heartbeat("w", 0)
    for _ in range(9):
        finished_saga("completed")
    finished_saga("compensated")
    assert "compensation_rate_high" not in alert_names(status_page())  # exactly 10 %

    finished_saga("failed")
    assert "compensation_rate_high" in alert_names(status_page())  # 2 / 11


def test_execution_time_threshold(checkout):
    heartbeat("w", 0)
    finished_saga("completed", duration_s=300)
    assert "saga_duration_high" not in alert_names(status_page())  # exactly 5 min

    finished_saga("completed", duration_s=302)
    page = status_page()
    assert "saga_duration_high" in alert_names(page)
    assert page["status"] == "degraded"


@override_settings(ROOT_URLCONF="tests.status_urls")
def test_api_error_rate_threshold_counts_5xx_only():
    heartbeat("w", 0)
    client = APIClient()
    assert client.get("/test/boom/").status_code == 500
    for _ in range(19):
        assert client.get("/no-such-page/").status_code == 404  # 4xx: not errors
    page = status_page()  # counted after it answered
    assert page["api"]["requests"] == 20
    assert page["api"]["error_rate"] == 0.05
    assert "api_error_rate_high" not in alert_names(page)  # exactly 5 %

    assert client.get("/test/boom/").status_code == 500  # 2 of 22
    page = status_page()
    assert page["api"]["error_rate"] == pytest.approx(2 / 22, abs=1e-4)
    assert "api_error_rate_high" in alert_names(page)
    assert page["status"] == "degraded"


@override_settings(ROOT_URLCONF="tests.status_urls")
def test_api_response_time_threshold():
    heartbeat("w", 0)
    client = APIClient()
    client.get("/test/slow/", {"seconds": "2.1"})
    page = status_page()
    assert page["api"]["avg_response_ms"] >= 2100
    assert "api_response_time_high" in alert_names(page)
    assert page["status"] == "degraded"

    client.get("/no-such-page/")  # fast answers bring the average down
    page = status_page()
    assert page["api"]["requests"] == 3  # the slow one, the first status page, the 404
    assert page["api"]["avg_response_ms"] < 2000
    assert "api_response_time_high" not in alert_names(page)


def test_redis_configured_but_down_degrades_and_falls_back_to_this_process(settings):
    heartbeat("w", 0)
    with throwaway_redis() as (redis_process, port):
        settings.REDIS_PORT, settings.REDIS_DB = port, 0
        APIClient().get("/no-such-page/")
        assert status_page()["api"]["scope"] == "cluster"
        redis_process.kill()
        redis_process.wait(timeout=10)

        page = status_page()

    assert page["dependencies"]["redis"] == "down"
    assert page["status"] == "degraded"
    # This process's own figures: the 404 and the first status request.
    assert page["api"]["scope"] == "process"
    assert page["api"]["requests"] == 2


def test_without_redis_the_figures_are_this_process(settings):
    heartbeat("w", 0)
    settings.REDIS_HOST = ""
    APIClient().get("/no-such-page/")

    page = status_page()

    assert page["dependencies"]["redis"] == "disabled"
    assert page["api"] == {
        "requests": 1, "error_rate": 0.0, "avg_response_ms": page["api"]["avg_response_ms"],
        "scope": "process",
    }  # fmt: skip
    assert page["status"] == "ok"


def redis_bucket(now: float) -> dict:
    """This test's Redis bucket of the minute `now` falls in, as written so far."""
    from sagas.redis_client import redis_client

    key = f"{request_stats.REDIS_KEY_PREFIX}{int(now // request_stats.BUCKET_SECONDS)}"
    return {k.decode(): v.decode() for k, v in redis_client().hgetall(key).items()}


@pytest.fixture
def no_flusher(monkeypatch):
    """No flusher thread in between: figures stay pending until `pending_write()`."""
    idle = request_stats._Flusher()
    idle.ensure = lambda: None  # (a running one stops)
    monkeypatch.setattr(request_stats, "_flusher", idle)


def test_the_rate_limit_script_carries_no_figures(client_api, no_flusher):
    started = time.time()
    assert client_api.get("/no-such-page/").status_code == 404
    assert client_api.get("/api/sagas/").status_code == 200  # counted by the rate limiter
    assert redis_bucket(started) == {}  # neither request's figure went with it

    request_stats.pending_write()  # what the flusher does
    bucket = redis_bucket(started)
    assert bucket["requests"] == "2"
    assert float(bucket["seconds"]) > 0
    assert "errors" not in bucket


def test_the_status_page_counts_this_process_figures_not_yet_written(no_flusher):
    heartbeat("w", 0)
    started = time.time()
    request_stats.request_record(status=500, duration_s=0.25)
    request_stats.pending_write()
    request_stats.request_record(status=200, duration_s=0.75)  # pending

    page = status_page()

    assert page["api"] == {
        "requests": 2, "error_rate": 0.5, "avg_response_ms": 500.0, "scope": "cluster",
    }  # fmt: skip
    assert redis_bucket(started)["requests"] == "1"  # the read wrote nothing


# Redis commands that change data or may: flagged "write", or scripts and transactions.
MAY_WRITE = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "multi", "exec"}


# A SELECT, or the server-side cursor of one (QuerySet.iterator() on PostgreSQL).
READ_ONLY_SQL = re.compile(
    r"\s*(SELECT\b|DECLARE\s+\S+\s+.*\bCURSOR\b.*?\bFOR\s+SELECT\b)", re.I | re.S
)


def command_calls(client) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


def writes_among(client, commands) -> set[str]:
    """Which of `commands` write, by Redis's own flags (COMMAND INFO)."""
    names = [name.split("|")[0] for name in commands]
    infos = client.execute_command("COMMAND", "INFO", *names)
    return {
        name
        for name, info in zip(names, infos.values() if isinstance(infos, dict) else infos)
        if name in MAY_WRITE or "write" in (info or {}).get("flags", [])
    }


def test_reading_the_status_page_writes_nothing(settings, no_flusher):
    """Neither Redis (counted with INFO commandstats on a Redis of its own) nor the
    database (every statement the read issues)."""
    import redis

    heartbeat("w", 0)
    with throwaway_redis() as (_, port):
        settings.REDIS_PORT, settings.REDIS_DB = port, 0
        APIClient().get("/no-such-page/")
        request_stats.pending_write()
        APIClient().get("/no-such-page/")  # pending: a read that wrote would write it
        observer = redis.Redis(port=port)
        before = command_calls(observer)
        with CaptureQueriesContext(connection) as queries:
            page = status_page()
        after = command_calls(observer)
        changed = {name for name in after if after[name] != before.get(name, 0)}
        writes = writes_among(observer, changed - {"info"})  # (INFO: our own counting)

    assert after["hmget"] - before.get("hmget", 0) == request_stats.BUCKETS  # the read, measured
    assert writes == set(), changed
    assert page["api"]["requests"] == 2 and page["api"]["scope"] == "cluster"
    statements = [query["sql"] for query in queries]
    assert statements and all(READ_ONLY_SQL.match(sql) for sql in statements), statements


def test_figures_are_written_by_their_flusher_within_the_flush_interval(monkeypatch):
    monkeypatch.setattr(request_stats, "FLUSH_SECONDS", 0.05)
    monkeypatch.setattr(request_stats, "_flusher", request_stats._Flusher())
    started = time.time()
    APIClient().get("/no-such-page/")

    deadline = time.monotonic() + 5
    while redis_bucket(started).get("requests") != "1" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis_bucket(started)["requests"] == "1"


def test_figures_a_failed_flush_could_not_write_go_with_the_next_one(settings, monkeypatch):
    """Redis down at a flush: the figures stay pending, and are written once (all or
    nothing) when it is back."""
    monkeypatch.setattr(redis_client, "RETRY_SECONDS", 0.0)
    monkeypatch.setattr(request_stats, "_flusher", request_stats._Flusher())
    monkeypatch.setattr(request_stats._flusher, "ensure", lambda: None)  # flushes: ours only
    started = time.time()
    with throwaway_redis() as (redis_process, port):
        settings.REDIS_PORT, settings.REDIS_DB = port, 0
        request_stats.request_record(status=200, duration_s=0.1)
        redis_process.kill()
        redis_process.wait(timeout=10)
        request_stats.request_record(status=503, duration_s=0.3)
        request_stats.pending_write()  # fails: both kept
        assert redis_client.redis_breaker().down
        with throwaway_redis(port=port):
            request_stats.pending_write()
            request_stats.pending_write()  # nothing left: nothing written twice
            bucket = redis_bucket(started)

    assert bucket["requests"] == "2" and bucket["errors"] == "1"
    assert float(bucket["seconds"]) == pytest.approx(0.4)
    assert not redis_client.redis_breaker().down


@pytest.fixture
def cgroup_limits(tmp_path, monkeypatch):
    """A cgroup v2 directory of the test's own, with the limits the test writes."""
    monkeypatch.setattr(process_usage, "CGROUP", tmp_path)
    # No earlier look of another test: the first CPU figure is a fresh sample.
    monkeypatch.setattr(process_metrics, "_previous", {})
    return tmp_path


def test_resources_are_measured_against_the_host_without_a_cgroup_limit(cgroup_limits):
    heartbeat("w", 0)
    resources = status_page()["resources"]
    assert resources["processes"] == 1  # multiprocess mode off: this process
    assert 10 * 2**20 < resources["memory_bytes"] < resources["memory_limit_bytes"]
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    assert resources["memory_limit_bytes"] == int(meminfo[1]) * 1024
    assert resources["cpu_limit_cores"] == os.cpu_count()
    assert 0 <= resources["cpu_ratio"]


def test_memory_over_80_percent_of_the_limit_alerts(cgroup_limits):
    heartbeat("w", 0)
    own = process_usage.usage(os.getpid()).resident_bytes
    (cgroup_limits / "memory.max").write_text(f"{int(own / 0.9)}\n")
    page = status_page()
    assert page["resources"]["memory_limit_bytes"] == int(own / 0.9)
    assert alert_names(page) == {"memory_usage_high"}
    assert page["status"] == "degraded"
    alert = next(a for a in page["alerts"] if a["name"] == "memory_usage_high")
    assert alert["threshold"] == 0.8 and alert["value"] > 0.8

    (cgroup_limits / "memory.max").write_text(f"{own * 2}\n")
    assert alert_names(status_page()) == set()


def test_cpu_over_80_percent_of_the_limit_alerts(cgroup_limits):
    heartbeat("w", 0)
    (cgroup_limits / "cpu.max").write_text("10000 100000\n")  # a tenth of a core
    stop = threading.Event()
    spinner = threading.Thread(target=_spin, args=(stop,))
    spinner.start()
    try:
        time.sleep(0.3)  # this process now uses well over a tenth of a core
        page = status_page()
    finally:
        stop.set()
        spinner.join()
    assert page["resources"]["cpu_limit_cores"] == 0.1
    assert page["resources"]["cpu_ratio"] > 0.8
    assert "cpu_usage_high" in alert_names(page)

    (cgroup_limits / "cpu.max").write_text("max 100000\n")  # no quota: the CPU count
    time.sleep(1.1)  # idle for a second: the next look measures the time since this one
    page = status_page()
    assert page["resources"]["cpu_limit_cores"] == os.cpu_count()
    assert "cpu_usage_high" not in alert_names(page)


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(10_000))
