"""Debian's Prometheus scrapes the real service and evaluates deploy/prometheus/alerts.yml.

Gunicorn (two workers) and a saga worker count into one metrics directory; Prometheus
2.42 scrapes `/metrics` every second through a small proxy that adds `X-API-Key` (2.42's
scrape config cannot send custom headers: docs/operations.md#scraping-metrics) and
evaluates a copy of the rules whose `for:` windows are 0 s. Sagas run in two waves: the
first, mostly completed, makes every counter series known to Prometheus; the second, mostly
declined by a participant (compensated), must fire the compensation-rate and success-rate
alerts, while the alerts of a healthy service stay silent.
"""

import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml
from django.conf import settings

from tests.e2e.workers import WorkerProcess
from tests.gunicorn_process import gunicorn_start
from tests.participants import ParticipantServer
from tests.saga_builders import charge_or_decline, reserve_and_charge
from tests.support import free_port, wait_until
from tests.unit.test_grafana_dashboard import as_prometheus_sees_it, queries

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
FIRST_WAVE = [False, False, False, True]  # declined? one compensated saga makes its series
SECOND_WAVE = [False, True, True, True]
EXPECTED_SERIES = (
    "saga_started_total",
    'saga_finished_total{status="completed"}',
    'saga_finished_total{status="compensated"}',
    'saga_participant_calls_total{phase="action",outcome="succeeded"}',
    'saga_participant_calls_total{phase="action",outcome="permanent_error"}',
    'saga_participant_calls_total{phase="compensation",outcome="succeeded"}',
    "saga_duration_seconds_bucket",
    'saga_step_duration_seconds_count{phase="action"}',
    'saga_waiting{status="pending"}',
    'saga_waiting{status="failed"}',
    "saga_workers_alive",
    'saga_api_requests_total{method="POST",status="202"}',
    "saga_api_request_duration_seconds_bucket",
)


class HeaderProxy:
    """Forwards GET /metrics to the service with the internal key, as an operator's nginx
    in front of an older Prometheus does; answers anything else 404."""

    def __init__(self, upstream: str, key: str):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                answer = requests.get(upstream + "/metrics", headers={"X-API-Key": key}, timeout=10)
                proxy.scrapes += 1
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers["Content-Type"])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format, *args):
                pass

        self.scrapes = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PrometheusProcess:
    """Debian's `prometheus` on a free loopback port, its data in a temporary directory."""

    def __init__(self, tmp_path: Path, target: str):
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: install Debian's prometheus package (.ci/run does)"
        rules = tmp_path / "alerts.yml"
        rules.write_text(yaml.safe_dump(short_windows(yaml.safe_load(RULES.read_text()))))
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(rules, target)))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = tmp_path / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.ready, timeout=30, interval=0.1, what="Prometheus ready")

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log_path.read_text()[-3000:]
        try:
            return requests.get(self.url + "/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def query(self, expr: str) -> list[dict]:
        answer = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alerts(self) -> dict[str, dict]:
        """Pending and firing alerts by name (each rule here yields at most one)."""
        answer = requests.get(self.url + "/api/v1/alerts", timeout=10)
        assert answer.status_code == 200, answer.text
        return {alert["labels"]["alertname"]: alert for alert in answer.json()["data"]["alerts"]}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def short_windows(rules: dict) -> dict:
    """The shipped rules with `for: 0s`: an alert fires at the first evaluation that sees
    its condition (the windows themselves are covered by promtool's unit tests)."""
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "0s"
    return rules


def scrape_config(rules: Path, target: str) -> dict:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "saga-orchestrator",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target]}],
            }
        ],
    }


def start_sagas(server, declines: list[bool], first: int) -> None:
    for n, decline in enumerate(declines, start=first):
        started = requests.post(
            server.base_url + "/api/sagas/",
            json={"definition": "watched", "input": {"n": n, "decline": decline}},
            headers={"X-API-Key": settings.SAGA_API_KEY},
            timeout=30,
        )
        assert started.status_code == 202, started.text


def finished(prometheus: PrometheusProcess, status: str) -> float | None:
    return prometheus.value(f'sum(saga_finished_total{{status="{status}"}})')


def dashboard_queries_answer(prometheus: PrometheusProcess) -> None:
    """Every query of the Grafana dashboard runs; those over the series this service serves
    show data (memory and CPU come from the process collector; no request failed with 5xx)."""
    for expr in queries():
        result = prometheus.query(as_prometheus_sees_it(expr))
        if '"5.."' not in expr:
            assert result, f"the dashboard's {expr} shows nothing"


def test_prometheus_scrapes_the_service_and_fires_when_a_participant_declines(tmp_path):
    metrics_dir = str(tmp_path / "metrics")
    participants = ParticipantServer()
    participants.script("POST", "/charge", charge_or_decline)
    server = gunicorn_start(tmp_path, workers=2, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    worker = WorkerProcess(tmp_path, concurrency=2, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    proxy = HeaderProxy(server.base_url, settings.INTERNAL_API_KEY)
    prometheus = None
    try:
        created = requests.post(
            server.base_url + "/api/saga-definitions/",
            json=reserve_and_charge(participants, name="watched", max_attempts=2),
            headers={"X-API-Key": settings.INTERNAL_API_KEY},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        prometheus = PrometheusProcess(tmp_path, proxy.address)

        # Wave 1: once scraped, every series below is known to Prometheus.
        start_sagas(server, FIRST_WAVE, first=0)
        wait_until(
            lambda: (
                finished(prometheus, "completed") == 3 and finished(prometheus, "compensated") == 1
            ),
            timeout=30,
            interval=0.2,
            what="the first wave scraped",
        )
        for series in EXPECTED_SERIES:
            assert prometheus.query(series), f"{series} not scraped"
        assert prometheus.value("sum(saga_started_total)") == len(FIRST_WAVE)
        assert prometheus.value("max(saga_workers_alive)") >= 1
        assert prometheus.value('up{job="saga-orchestrator"}') == 1

        # Wave 2: 3 of 4 declined. Over the hour: 2 completed, 3 compensated among the sagas
        # that finished since Prometheus first saw the counters.
        start_sagas(server, SECOND_WAVE, first=len(FIRST_WAVE))

        def saga_alerts_fire() -> bool:
            alerts = prometheus.alerts()
            wanted = ("SagaCompensationRateHigh", "SagaSuccessRateLow")
            return all(alerts.get(name, {}).get("state") == "firing" for name in wanted)

        wait_until(saga_alerts_fire, timeout=30, interval=0.2, what="the saga alerts firing")
        alerts = prometheus.alerts()
        # About 3 of 5 (increase() extrapolates each series over its own samples).
        assert float(alerts["SagaCompensationRateHigh"]["value"]) > 0.10
        assert float(alerts["SagaSuccessRateLow"]["value"]) < 0.95
        runbook = alerts["SagaCompensationRateHigh"]["annotations"]["runbook"]
        assert runbook.startswith("docs/operations.md#compensation-rate")
        assert finished(prometheus, "compensated") == 4
        assert prometheus.value("sum(saga_started_total)") == len(FIRST_WAVE) + len(SECOND_WAVE)
        for healthy in ("SagaNoWorker", "SagaFailedWaiting", "SagaApiErrorRateHigh"):
            assert healthy not in alerts, f"{healthy} is {alerts[healthy]['state']}"
        assert proxy.scrapes >= 2
        dashboard_queries_answer(prometheus)
    finally:
        if prometheus is not None:
            prometheus.stop()
        proxy.close()
        worker.close()
        server.stop()
        participants.close()
