"""Prometheus metrics (DESIGN §6a names) and the `/metrics` exposition.

Counters and histograms live in prometheus_client multiprocess files (one directory shared
by every Gunicorn worker and saga worker of a host, saga_orchestrator/prometheus.py), so a
scrape answered by any Gunicorn worker sums all of them. The gauges `saga_waiting` and
`saga_workers_alive` are read from PostgreSQL at scrape time instead: they describe the
shared database, not a process.

The `record_*` functions never raise (a metric must not break a saga). The engine's events
reach them through `saga_event_record`, which sagas/apps.py registers as an engine event
listener in every process (Gunicorn workers, saga workers): calls, finished sagas, and the
actions of sagas/engine/control.py (cancel, retry, pause, resume, skip) once committed;
`saga_start` counts new sagas.
"""

import logging
import time

from saga_orchestrator import prometheus
from sagas.observability.request_stats import request_record

# Before prometheus_client is first imported: it picks single-process or multiprocess
# values from PROMETHEUS_MULTIPROC_DIR at import (its documented mode; this points it at
# this host's directory, saga_orchestrator/prometheus.py).
_MULTIPROC_DIR = prometheus.multiproc_dir_prepare()

from django.db import DatabaseError  # noqa: E402
from django.db.models import Count, Q  # noqa: E402
from django.utils import timezone  # noqa: E402
from prometheus_client import (  # noqa: E402
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

from sagas.observability.process_metrics import ProcessCollector  # noqa: E402

logger = logging.getLogger("sagas.observability.metrics")

# Sagas run for seconds to hours (retries wait); calls for milliseconds to the call timeout.
SAGA_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)

SAGA_STARTED = Counter("saga_started_total", "Sagas accepted (POST /api/sagas/ with 202).")
SAGA_FINISHED = Counter("saga_finished_total", "Sagas that reached a terminal status.", ["status"])
PARTICIPANT_CALLS = Counter(
    "saga_participant_calls_total",
    "Participant call attempts by phase (action, compensation) and outcome.",
    ["phase", "outcome"],
)
SAGA_DURATION = Histogram(
    "saga_duration_seconds",
    "Time from a saga's creation to its terminal status.",
    buckets=SAGA_BUCKETS,
)
STEP_DURATION = Histogram(
    "saga_step_duration_seconds",
    "Duration of one participant call attempt, by phase.",
    ["phase"],
    buckets=CALL_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "saga_webhook_deliveries_total",
    "Webhook deliveries by outcome: delivered, retry (failed, tried again later), dead.",
    ["outcome"],
)
WEBHOOK_OUTCOMES = ("delivered", "retry", "dead")
CALLBACKS = Counter(
    "saga_callbacks_total",
    "Callbacks of asynchronous steps by outcome: succeeded and failed (recorded), "
    "duplicate (recorded before), conflict, forbidden (a wrong token).",
    ["outcome"],
)
CALLBACK_OUTCOMES = ("succeeded", "failed", "duplicate", "conflict", "forbidden")
API_REQUESTS = Counter(
    "saga_api_requests_total", "API requests answered, by method and status.", ["method", "status"]
)
API_LATENCY = Histogram(
    "saga_api_request_duration_seconds",
    "API request latency inside Django, by method.",
    ["method"],
    buckets=REQUEST_BUCKETS,
)
OPERATOR_ACTIONS = Counter(
    "saga_operator_actions_total",
    "Actions on sagas accepted (202) from the API or the console, by action: cancel, "
    "retry, pause, resume, skip (a resume with `skip`).",
    ["action"],
)
# The engine's event of each action accepted from outside (sagas/engine/control.py).
OPERATOR_ACTION_EVENTS = frozenset(("cancel", "retry", "pause", "resume", "skip"))
WAITING_KINDS = ("pending", "retry_scheduled", "compensating", "failed", "paused")


def record_saga_started() -> None:
    _safely(SAGA_STARTED.inc)


def _child(metric, *labels):
    """`metric.labels(*labels)`, looked up once per process and label set (labels() takes
    a lock and builds a tuple on every call; the hot path updates the same few children)."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


_children: dict[tuple, object] = {}


def record_saga_finished(*, status: str, duration_s: float) -> None:
    """A saga reached `status` (completed, compensated, cancelled, failed)."""
    try:
        _child(SAGA_FINISHED, status).inc()
        SAGA_DURATION.observe(max(duration_s, 0.0))
    except Exception:  # a full disk or a bad label must not fail a saga or a request
        logger.warning("metric not recorded", exc_info=True)


def record_participant_call(*, phase: str, outcome: str, duration_s: float) -> None:
    """One call attempt: phase action|compensation, outcome succeeded|retryable_error|…."""
    try:
        _child(PARTICIPANT_CALLS, phase, outcome).inc()
        _child(STEP_DURATION, phase).observe(max(duration_s, 0.0))
    except Exception:
        logger.warning("metric not recorded", exc_info=True)


def record_operator_action(action: str) -> None:
    """An accepted action: cancel, retry, pause, resume or skip (a resume with `skip`)."""
    _safely(lambda: _child(OPERATOR_ACTIONS, action).inc())


def record_webhook_delivery(*, outcome: str) -> None:
    """One webhook delivery: outcome delivered|retry|dead."""
    _safely(lambda: _child(WEBHOOK_DELIVERIES, outcome).inc())


def _series_zeroed() -> None:
    """Every label's series from the start, at 0: Prometheus then sees the first event as
    an increase (a series born at 1 has none; the SagaWebhooksDead alert needs the first
    `dead`), and the dashboard's panels have data."""
    for counter, labels in (
        (OPERATOR_ACTIONS, sorted(OPERATOR_ACTION_EVENTS)),
        (CALLBACKS, CALLBACK_OUTCOMES),
        (WEBHOOK_DELIVERIES, WEBHOOK_OUTCOMES),
    ):
        for label in labels:
            _child(counter, label)


_series_zeroed()


def record_api_request(*, method: str, status: int, duration_s: float) -> None:
    try:
        _child(API_REQUESTS, method, str(status)).inc()
        _child(API_LATENCY, method).observe(max(duration_s, 0.0))
    except Exception:
        logger.warning("metric not recorded", exc_info=True)


def saga_event_record(event: dict) -> None:
    """Engine event listener (sagas.engine.store.EVENT_LISTENERS): one call attempt
    → participant calls and step duration; a terminal status → finished and saga duration;
    an action accepted from outside (API or console, once committed) → operator actions;
    a webhook delivery → deliveries by outcome."""
    kind = event.get("event")
    duration_s = (event.get("duration_ms") or 0.0) / 1000
    if kind == "call":
        record_participant_call(
            phase=event["phase"], outcome=event["outcome"], duration_s=duration_s
        )
    elif kind == "finished":
        record_saga_finished(status=event["status"], duration_s=duration_s)
    elif kind in OPERATOR_ACTION_EVENTS:
        record_operator_action(kind)
    elif kind == "webhook":
        record_webhook_delivery(outcome=event["outcome"])
    elif kind == "callback":
        _safely(lambda: _child(CALLBACKS, event["outcome"]).inc())


def _safely(record) -> None:
    try:
        record()
    except Exception:  # a full disk or a bad label must not fail a saga or a request
        logger.warning("metric not recorded", exc_info=True)


class DatabaseCollector:
    """`saga_waiting{status}` and `saga_workers_alive`, counted at scrape time."""

    def collect(self):
        try:
            waiting, alive = saga_waiting_counts(), workers_alive_count()
        except DatabaseError:
            logger.warning("metrics: database unavailable, saga gauges skipped")
            return
        gauge = GaugeMetricFamily(
            "saga_waiting",
            "Sagas waiting: pending (not started), retry_scheduled (a retry later), "
            "compensating, failed (for an operator's retry), paused (for an operator's "
            "resume or cancel).",
            labels=["status"],
        )
        for kind in WAITING_KINDS:
            gauge.add_metric([kind], waiting[kind])
        yield gauge
        yield GaugeMetricFamily(
            "saga_workers_alive",
            "Saga workers whose heartbeat is younger than 3 heartbeat intervals.",
            value=alive,
        )


def saga_waiting_counts() -> dict[str, int]:
    from sagas.models import SagaInstance, SagaStatus

    now = timezone.now()
    return SagaInstance.objects.aggregate(
        pending=Count("id", filter=Q(status=SagaStatus.PENDING)),
        retry_scheduled=Count("id", filter=Q(status=SagaStatus.RUNNING, next_attempt_at__gt=now)),
        compensating=Count("id", filter=Q(status=SagaStatus.COMPENSATING)),
        failed=Count("id", filter=Q(status=SagaStatus.FAILED)),
        paused=Count("id", filter=Q(status=SagaStatus.PAUSED)),
    )


def workers_alive_count() -> int:
    from sagas.engine.heartbeat import workers_alive

    return workers_alive().count()


class _OwnCollector:
    """This process's metrics (single-process mode: no multiprocess directory)."""

    def collect(self):
        yield from REGISTRY.collect()


class FilesCollector:
    """Every host's process files and the archive of dead processes, summed.

    prometheus_client's MultiProcessCollector reads one directory; ours has one per host
    plus the archive, so the same public `merge` is given the list. Dead processes' files
    of this host are compacted first (a saga worker killed without its exit hook).
    """

    def __init__(self, base: str):
        self.base = base

    def collect(self):
        if prometheus.dead_files_present(self.base):
            prometheus.compact(self.base)
        with prometheus.files_locked(self.base):
            metrics = MultiProcessCollector.merge(prometheus.metric_files(self.base))
        yield from metrics


def metrics_text() -> bytes:
    """The exposition: every process's counters, their memory and CPU, the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if _MULTIPROC_DIR:
        registry.register(FilesCollector(_MULTIPROC_DIR))
    else:
        registry.register(_OwnCollector())
    registry.register(ProcessCollector())
    registry.register(DatabaseCollector())
    return generate_latest(registry)


class RequestMetricsMiddleware:
    """Counts every API response by method and status and times it: in Prometheus, and in
    the last hour's figures of the status alerts (sagas/observability/request_stats.py)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        prometheus.marker_touch("api")
        response = self.get_response(request)
        took = time.perf_counter() - started
        record_api_request(
            method=_method_label(request.method), status=response.status_code, duration_s=took
        )
        request_record(status=response.status_code, duration_s=took)
        return response


KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _method_label(method: str) -> str:
    # A client can send any token as a method: keep the label set bounded.
    return method if method in KNOWN_METHODS else "other"
