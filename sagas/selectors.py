"""Reads of the REST API: definitions, saga lists and details, attempt logs, status figures."""

from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sagas.engine import heartbeat
from sagas.models import (
    TERMINAL_STATUSES,
    SagaAttempt,
    SagaDefinition,
    SagaEvent,
    SagaInstance,
    SagaStatus,
    WebhookEvent,
)
from sagas.observability.process_metrics import resource_figures
from sagas.observability.request_stats import request_figures

# The definition version column is a PostgreSQL integer.
MAX_DEFINITION_VERSION = 2**31 - 1
STATS_WINDOW = timedelta(hours=1)
# DESIGN §7 thresholds, over the last hour.
MIN_SUCCESS_RATE = 0.95
MAX_COMPENSATION_RATE = 0.10
MAX_AVG_DURATION_MS = 5 * 60 * 1000.0
MAX_API_RESPONSE_MS = 2000.0
MAX_API_ERROR_RATE = 0.05
# The guide's resource alerts: the service's processes against the container's limits.
MAX_MEMORY_RATIO = 0.80
MAX_CPU_RATIO = 0.80


def definition_get(*, name: str, version: int | None = None) -> SagaDefinition | None:
    """That version of `name`, or its latest when `version` is None; None if absent."""
    found = SagaDefinition.objects.filter(name=name)
    if version is not None:
        if not version_in_range(version):
            return None  # a number the column cannot hold names no version
        return found.filter(version=version).first()
    return found.order_by("-version").first()


def version_in_range(version: int) -> bool:
    """Whether the version column (a PostgreSQL integer) can hold `version`: larger numbers
    make the database raise (integer out of range; SQLite: OverflowError), not miss."""
    return 1 <= version <= MAX_DEFINITION_VERSION


def definition_list() -> QuerySet[SagaDefinition]:
    """The latest version of every name, by name (portable: no DISTINCT ON for SQLite)."""
    newer = SagaDefinition.objects.filter(name=OuterRef("name"), version__gt=OuterRef("version"))
    return SagaDefinition.objects.filter(~Exists(newer)).order_by("name")


def saga_list(
    *,
    status: str | None = None,
    definition: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[SagaInstance]:
    """Sagas newest first, filtered by the given values."""
    sagas = SagaInstance.objects.all()
    if status:
        sagas = sagas.filter(status=status)
    if definition:
        sagas = sagas.filter(definition_name=definition)
    if created_after:
        sagas = sagas.filter(created_at__gte=created_after)
    if created_before:
        sagas = sagas.filter(created_at__lt=created_before)
    return sagas.order_by("-created_at", "-id")


def webhook_event_list(*, status: str | None = None, saga=None) -> QuerySet[WebhookEvent]:
    """Webhook events newest first, filtered by the given values."""
    events = WebhookEvent.objects.all()
    if status:
        events = events.filter(status=status)
    if saga:
        events = events.filter(saga_id=saga)
    return events.order_by("-id")


def saga_get(*, saga_id) -> SagaInstance | None:
    return SagaInstance.objects.filter(id=saga_id).first()


def saga_attempt_list(*, saga_id) -> list[SagaAttempt]:
    """Every participant call of a saga, in the order they were made: the attempt rows,
    then the call in flight, if any (outcome null).

    A call's row is written once it ends; until then it is its step's `in_flight` mark in
    the saga row. The saga is read first: a call that ends in between is then in both
    reads, and its row wins."""
    saga = SagaInstance.objects.filter(id=saga_id).values("steps").first()
    rows = list(SagaAttempt.objects.filter(saga_id=saga_id).order_by("id"))
    # Every call in flight (a parallel group's members may have several, §9.3).
    for in_flight in _calls_in_flight(saga_id, saga) if saga else []:
        if not any(_same_call(row, in_flight) for row in rows):
            rows.append(in_flight)
    return rows


def saga_history(*, saga_id) -> list[dict]:
    """The saga's lifecycle in order (DESIGN §9.2): `at`, `event`, `step`, `actor`,
    `key_id`, `reason`, `details`."""
    fields = ("at", "event", "step", "actor", "key_id", "reason", "details")
    return list(SagaEvent.objects.filter(saga_id=saga_id).order_by("id").values(*fields))


def _calls_in_flight(saga_id, saga: dict) -> list[SagaAttempt]:
    calls = []
    for index, step in enumerate(saga["steps"]):
        mark = step.get("in_flight")
        # A bare `True`: an earlier version inserted the row in flight (it is in `rows`).
        if isinstance(mark, dict):
            calls.append(
                SagaAttempt(
                    saga_id=saga_id,
                    step=step["name"],
                    step_index=index,
                    phase=mark["phase"],
                    attempt=mark["attempt"],
                    run=mark.get("run", 1),
                    method=mark["method"],
                    url=mark["url"],
                    started_at=parse_datetime(mark["started_at"]),
                    # The request as sent (a mark from before §9.6 has none); no response yet.
                    request_headers=mark.get("request_headers"),
                    request_body=mark.get("request_body"),
                    truncated=mark.get("request_truncated", False),
                )
            )
    return calls


def _same_call(row: SagaAttempt, call: SagaAttempt) -> bool:
    # The attempt number alone is not enough: a call re-sent after an interruption keeps
    # it, while the interrupted row keeps its own start.
    key = ("step_index", "phase", "run", "attempt", "started_at")
    return all(getattr(row, name) == getattr(call, name) for name in key)


def workers_alive(*, now: datetime | None = None) -> int:
    """Workers alive (the rule is sagas/engine/heartbeat.py's)."""
    return heartbeat.workers_alive(now=now).count()


def saga_stats(*, now: datetime | None = None, recent: list | None = None) -> dict:
    """Figures of GET /api/sagas/status/.

    `sagas` counts every saga by current status. Over the last hour, among sagas that
    finished (cancelled ones excluded: a client's choice is neither success nor failure):
    `success_rate` = completed / finished, `compensation_rate` = (compensated + failed) /
    finished; `avg_duration_ms` and `p95_duration_ms` are created→finished over all that
    finished. Each is None when nothing finished in the hour. `api`: the last hour's
    requests, 5xx rate and average response time across every API process
    (sagas/observability/request_stats.py). `resources`: resident memory and CPU use of the
    service's processes against the memory and CPU limits, now
    (sagas/observability/process_metrics.py). `status` is "degraded" when an alert fires or
    a dependency is down (Redis configured but unreachable, no live worker). `recent`:
    finished_since(now - STATS_WINDOW) when the caller read it already.
    """
    now = now or timezone.now()
    totals = dict(SagaInstance.objects.values_list("status").annotate(n=Count("id")))
    counts = {status: totals.get(status, 0) for status in SagaStatus.values}
    if recent is None:
        recent = finished_since(now - STATS_WINDOW)
    api = request_figures(now=now.timestamp())
    alive = workers_alive(now=now)
    figures = {
        "sagas": counts,
        **_rates(recent),
        "avg_duration_ms": _average_ms(recent),
        "p95_duration_ms": _p95_ms(recent),
        "finished_last_hour": len(recent),
        "workers": {"alive": alive},
        "api": {key: api[key] for key in ("requests", "error_rate", "avg_response_ms", "scope")},
        "resources": resource_figures(),
        "dependencies": {"redis": api["redis"], "workers": "ok" if alive else "down"},
    }
    figures["alerts"] = saga_alerts(figures)
    down = "down" in figures["dependencies"].values()
    figures["status"] = "degraded" if figures["alerts"] or down else "ok"
    return figures


def finished_since(since: datetime) -> list[tuple[str, datetime, datetime]]:
    """(status, created_at, finished_at) of the sagas finished since `since` (the
    finished_at index). Only three columns per saga of one hour: light enough, and
    portable (SQLite too)."""
    return list(
        SagaInstance.objects.filter(finished_at__gte=since, status__in=TERMINAL_STATUSES)
        .values_list("status", "created_at", "finished_at")
        .iterator()
    )


def _rates(recent: list[tuple[str, datetime, datetime]]) -> dict:
    outcomes = [status for status, _, _ in recent if status != SagaStatus.CANCELLED]
    if not outcomes:
        return {"success_rate": None, "compensation_rate": None}
    compensated = sum(s in (SagaStatus.COMPENSATED, SagaStatus.FAILED) for s in outcomes)
    return {
        "success_rate": round(outcomes.count(SagaStatus.COMPLETED) / len(outcomes), 4),
        "compensation_rate": round(compensated / len(outcomes), 4),
    }


def _average_ms(recent: list[tuple[str, datetime, datetime]]) -> float | None:
    if not recent:
        return None
    total = sum((finished - created).total_seconds() for _, created, finished in recent)
    return round(total * 1000 / len(recent), 1)


def _p95_ms(recent: list[tuple[str, datetime, datetime]]) -> float | None:
    """Nearest-rank 95th percentile of created→finished."""
    p95 = nearest_rank_p95([(f - c).total_seconds() * 1000 for _, c, f in recent])
    return None if p95 is None else round(p95, 1)


def nearest_rank_p95(values: list[float]) -> float | None:
    """The nearest-rank 95th percentile of `values` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[-(-95 * len(ordered) // 100) - 1]  # the ceil(0.95 n)-th


def saga_alerts(figures: dict) -> list[dict]:
    """The DESIGN §7 thresholds that the figures cross."""
    api, resources = figures["api"], figures["resources"]
    below, above = (lambda v, t: v < t), (lambda v, t: v > t)
    rules = (
        (
            "success_rate_low",
            figures["success_rate"],
            MIN_SUCCESS_RATE,
            below,
            "Success rate over the last hour is below 95%.",
        ),
        (
            "compensation_rate_high",
            figures["compensation_rate"],
            MAX_COMPENSATION_RATE,
            above,
            "Compensation rate over the last hour is above 10%.",
        ),
        (
            "saga_duration_high",
            figures["avg_duration_ms"],
            MAX_AVG_DURATION_MS,
            above,
            "Average saga execution time over the last hour is above 5 minutes.",
        ),
        (
            "api_response_time_high",
            api["avg_response_ms"],
            MAX_API_RESPONSE_MS,
            above,
            "Average API response time over the last hour is above 2 seconds.",
        ),
        (
            "api_error_rate_high",
            api["error_rate"],
            MAX_API_ERROR_RATE,
            above,
            "More than 5% of API requests in the last hour failed with a 5xx.",
        ),
        (
            "memory_usage_high",
            resources["memory_ratio"],
            MAX_MEMORY_RATIO,
            above,
            "The service's processes use more than 80% of the memory limit.",
        ),
        (
            "cpu_usage_high",
            resources["cpu_ratio"],
            MAX_CPU_RATIO,
            above,
            "The service's processes use more than 80% of the CPU limit.",
        ),
    )
    return [
        {"name": name, "message": message, "value": value, "threshold": threshold}
        for name, value, threshold, crossed, message in rules
        if value is not None and crossed(value, threshold)
    ]
