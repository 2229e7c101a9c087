"""`/metrics` counts right across several Gunicorn workers and saga worker processes."""

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from tests.gunicorn_process import ROOT, child_env, gunicorn_start, json_lines
from tests.support import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_total(scraped: dict, status: str) -> float:
    return scraped.get(("saga_api_requests_total", (("method", "GET"), ("status", status))), 0.0)


@pytest.fixture
def gunicorn(tmp_path):
    # Small max_requests: workers are recycled during the test, and the counts of the
    # recycled ones must not vanish.
    server = gunicorn_start(
        tmp_path,
        workers=3,
        LOG_FILE=str(tmp_path / "app.log"),
        GUNICORN_MAX_REQUESTS="40",
        GUNICORN_MAX_REQUESTS_JITTER="0",
    )
    yield server
    server.stop()


def scrape(server) -> dict:
    response = server.get("/metrics", **{"X-API-Key": settings.INTERNAL_API_KEY})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(response.text)


def test_request_counters_are_exact_across_workers_and_recycling(gunicorn, tmp_path):
    pool = ThreadPoolExecutor(max_workers=6)
    # The start-up probe made requests too: count from a first scrape.
    before = scrape(gunicorn)
    base_404, base_401 = requests_total(before, "404"), requests_total(before, "401")
    base_200 = requests_total(before, "200") + 1
    for round_number in range(1, 5):
        statuses = list(
            pool.map(lambda i: gunicorn.get(f"/no-such-page-{i}").status_code, range(30))
        )
        assert statuses == [404] * 30
        statuses = list(pool.map(lambda i: gunicorn.get("/metrics").status_code, range(10)))
        assert statuses == [401] * 10
        scraped = scrape(gunicorn)
        assert requests_total(scraped, "404") == base_404 + 30 * round_number
        assert requests_total(scraped, "401") == base_401 + 10 * round_number
        # Earlier scrapes; this one is counted after its own response is built.
        assert requests_total(scraped, "200") == base_200 + round_number - 1
    pool.shutdown()

    served_by = {
        line["process"]
        for line in json_lines(tmp_path / "app.log")
        if line.get("event") == "http_request"
    }
    assert len(served_by) >= 3, "requests should have reached several workers"
    # 164 requests with max_requests=40: workers were recycled along the way.
    assert len(gunicorn.booted_pids()) > 3
    # ...and left no files: their counts are in the archive, only live workers' files stay.
    host_dir = tmp_path / "prometheus" / f"host-{socket.gethostname()}"
    wait_until(lambda: len(file_pids(host_dir)) <= 3, timeout=10, interval=0.05)
    assert sorted(os.listdir(tmp_path / "prometheus" / "archive")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]


def file_pids(directory) -> set[str]:
    return {name[:-3].rpartition("_")[2] for name in os.listdir(directory) if name.endswith(".db")}


def test_memory_and_cpu_of_each_api_worker(gunicorn):
    scraped = scrape(gunicorn)
    memory = {
        dict(labels)["pid"]: value
        for (name, labels), value in scraped.items()
        if name == "saga_process_resident_memory_bytes" and dict(labels)["role"] == "api"
    }
    cpu = {
        dict(labels)["pid"]: value
        for (name, labels), value in scraped.items()
        if name == "saga_process_cpu_seconds_total" and dict(labels)["role"] == "api"
    }
    # Three workers, each read from its own /proc entry (not only the one that answered).
    assert len(memory) == 3 and memory.keys() == cpu.keys()
    assert memory.keys() <= {str(pid) for pid in gunicorn.booted_pids()}
    assert all(10 * 2**20 < value < 2**30 for value in memory.values())
    assert all(value > 0 for value in cpu.values())
    assert scraped[("saga_memory_limit_bytes", ())] > 2**20
    assert scraped[("saga_cpu_limit_cores", ())] > 0


def test_saga_worker_process_metrics_reach_the_scrape(gunicorn, tmp_path):
    """A separate process (as a saga worker is) records into the shared directory."""
    script = (
        "import django; django.setup()\n"
        "from sagas.observability import metrics\n"
        "for _ in range(3): metrics.record_saga_started()\n"
        "metrics.record_saga_finished(status='completed', duration_s=1.5)\n"
        "metrics.record_saga_finished(status='compensated', duration_s=4.0)\n"
        "metrics.record_participant_call(phase='action', outcome='succeeded', duration_s=0.2)\n"
        "metrics.record_participant_call(phase='action', outcome='retryable_error', "
        "duration_s=0.3)\n"
        "metrics.record_participant_call(phase='compensation', outcome='succeeded', "
        "duration_s=0.1)\n"
    )
    env = child_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"), LOG_FILE="")
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)

    scraped = scrape(gunicorn)
    assert scraped[("saga_started_total", ())] == 3
    assert scraped[("saga_finished_total", (("status", "completed"),))] == 1
    assert scraped[("saga_finished_total", (("status", "compensated"),))] == 1
    assert scraped[("saga_duration_seconds_count", ())] == 2
    assert scraped[("saga_duration_seconds_sum", ())] == pytest.approx(5.5)
    calls = "saga_participant_calls_total"
    assert scraped[(calls, (("outcome", "succeeded"), ("phase", "action")))] == 1
    assert scraped[(calls, (("outcome", "retryable_error"), ("phase", "action")))] == 1
    assert scraped[(calls, (("outcome", "succeeded"), ("phase", "compensation")))] == 1
    assert scraped[("saga_step_duration_seconds_count", (("phase", "action"),))] == 2
    # The database gauges are there, from the (empty) test database.
    assert scraped[("saga_workers_alive", ())] == 0
    assert scraped[("saga_waiting", (("status", "pending"),))] == 0
