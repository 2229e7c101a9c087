"""GET /api/sagas/status/: open; totals per status; last-hour rates; workers; alerts."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from sagas.models import WorkerHeartbeat
from tests.api_builders import finished_saga, post_definition, saga_row

pytestmark = pytest.mark.django_db


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
    page = status_page()

    assert page["status"] == "ok"
    assert page["sagas"] == {
        "pending": 0, "running": 0, "compensating": 0, "completed": 0,
        "compensated": 0, "cancelled": 0, "failed": 0,
    }  # fmt: skip
    assert page["success_rate"] is None
    assert page["compensation_rate"] is None
    assert page["avg_duration_ms"] is None
    assert page["alerts"] == []
    assert page["workers"] == {"alive": 0}


def test_counts_are_totals_and_rates_cover_the_last_hour(checkout):
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
