"""`GET /metrics`: internal role, Prometheus text, DESIGN §6a names, database gauges."""

import os

import pytest
from django.test import TestCase, override_settings
from prometheus_client.parser import text_string_to_metric_families

from saga_orchestrator import process_usage
from sagas.observability import metrics
from tests.api_builders import definition as definition_body
from tests.api_builders import post_definition
from tests.builders import definition_create, heartbeat_create, saga_create

pytestmark = pytest.mark.django_db

DESIGN_NAMES = (
    "saga_started_total",
    "saga_finished_total",
    "saga_participant_calls_total",
    "saga_duration_seconds",
    "saga_step_duration_seconds",
    "saga_waiting",
    "saga_workers_alive",
    "saga_api_requests_total",
    "saga_api_request_duration_seconds",
)
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def scrape(internal_api) -> dict[tuple, float]:
    response = internal_api.get("/metrics", HTTP_ACCEPT=PROMETHEUS_ACCEPT)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_metrics_needs_a_key(anon_client):
    response = anon_client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_metrics_needs_the_internal_role(client_api):
    response = client_api.get("/metrics")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"


def test_metrics_has_the_design_names(internal_api):
    metrics.record_saga_finished(status="completed", duration_s=1.0)
    metrics.record_participant_call(phase="action", outcome="succeeded", duration_s=0.1)
    names = {
        family.name
        for family in text_string_to_metric_families(internal_api.get("/metrics").content.decode())
    }
    # The parser drops the `_total` suffix of counter families.
    for name in DESIGN_NAMES:
        assert name.removesuffix("_total") in names, name


def test_record_functions_count(internal_api):
    before = scrape(internal_api)
    metrics.record_saga_started()
    metrics.record_saga_finished(status="failed", duration_s=12.0)
    metrics.record_participant_call(
        phase="compensation", outcome="permanent_error", duration_s=0.05
    )
    after = scrape(internal_api)

    def delta(key):
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta(("saga_started_total", ())) == 1
    assert delta(("saga_finished_total", (("status", "failed"),))) == 1
    assert delta(("saga_duration_seconds_sum", ())) == pytest.approx(12.0)
    calls = (
        "saga_participant_calls_total",
        (("outcome", "permanent_error"), ("phase", "compensation")),
    )
    assert delta(calls) == 1
    assert delta(("saga_step_duration_seconds_count", (("phase", "compensation"),))) == 1
    # The scrape before is one API request answered 200.
    assert delta(("saga_api_requests_total", (("method", "GET"), ("status", "200")))) == 1


def test_a_bad_label_never_raises():
    metrics.record_participant_call(phase=None, outcome=object(), duration_s=-1)


def test_waiting_gauges_come_from_the_database(internal_api):
    definition = definition_create()
    saga_create(definition, status="pending")
    saga_create(definition, status="pending")
    saga_create(definition, status="running", next_attempt_in=60)  # waiting for a retry
    saga_create(definition, status="running", next_attempt_in=-1)  # due now: not waiting
    saga_create(definition, status="compensating", next_attempt_in=30)
    saga_create(definition, status="completed", finished_days_ago=0)
    saga_create(definition, status="failed", finished_days_ago=0)  # waits for an operator
    saga_create(definition, status="paused")  # waits for an operator too
    saga_create(definition, status="paused")
    scraped = scrape(internal_api)
    assert scraped[("saga_waiting", (("status", "pending"),))] == 2
    assert scraped[("saga_waiting", (("status", "retry_scheduled"),))] == 1
    assert scraped[("saga_waiting", (("status", "compensating"),))] == 1
    assert scraped[("saga_waiting", (("status", "failed"),))] == 1
    assert scraped[("saga_waiting", (("status", "paused"),))] == 2


@override_settings(SAGA_WORKER_HEARTBEAT_SECONDS=10)
def test_workers_alive_within_three_heartbeats(internal_api):
    heartbeat_create("w1", seconds_ago=1)
    heartbeat_create("w2", seconds_ago=29)
    heartbeat_create("w3", seconds_ago=31)
    assert scrape(internal_api)[("saga_workers_alive", ())] == 2


def test_metrics_page_is_in_the_schema(anon_client):
    schema = anon_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert "text/plain" in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_sagas_started_through_the_api_are_counted_once(client_api, internal_api):
    post_definition(internal_api, definition_body("counted"))
    before = scrape(internal_api)
    body = {"definition": "counted", "input": {"order_id": "A-1"}}
    first = client_api.post("/api/sagas/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    replay = client_api.post("/api/sagas/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    other = client_api.post("/api/sagas/", body, format="json")
    assert (first.status_code, replay.status_code, other.status_code) == (202, 200, 202)
    after = scrape(internal_api)
    assert after[("saga_started_total", ())] - before.get(("saga_started_total", ()), 0) == 2


def test_a_saga_cancelled_before_it_started_is_counted_as_finished(client_api, internal_api):
    post_definition(internal_api, definition_body("cancelled-early"))
    saga = client_api.post("/api/sagas/", {"definition": "cancelled-early"}, format="json")
    key = ("saga_finished_total", (("status", "cancelled"),))
    before = scrape(internal_api).get(key, 0.0)
    with TestCase.captureOnCommitCallbacks(execute=True):
        cancelled = client_api.post(f"/api/sagas/{saga.json()['id']}/cancel/")
    assert cancelled.status_code == 202
    assert scrape(internal_api)[key] - before == 1


def test_memory_and_cpu_of_this_process_and_the_limits(internal_api):
    """Multiprocess mode off (tests): the answering process itself, as `api`."""
    scraped = scrape(internal_api)
    labels = (("pid", str(os.getpid())), ("role", "api"))
    own = process_usage.usage(os.getpid())
    memory = scraped[("saga_process_resident_memory_bytes", labels)]
    assert 0.5 * own.resident_bytes < memory < 2 * own.resident_bytes
    assert 0 < scraped[("saga_process_cpu_seconds_total", labels)] <= own.cpu_seconds
    assert scraped[("saga_memory_limit_bytes", ())] == process_usage.memory_limit_bytes()
    assert scraped[("saga_cpu_limit_cores", ())] == process_usage.cpu_limit_cores()
