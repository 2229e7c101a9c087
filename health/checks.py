"""Dependency probes of /health/detailed/: each returns its state and how long it took.

Probes check the dependency itself on every call (never another component's last
outcome), with short timeouts, so the answer follows reality and a dead dependency makes
it quick rather than hang on the service's normal timeouts.
"""

import copy
import time

import redis
from django.conf import settings
from django.db import connections
from django.db.utils import load_backend

from sagas import selectors
from sagas.redis_client import redis_breaker, redis_client

# The health probe connects with this timeout (seconds) whatever DB_CONNECT_TIMEOUT says.
DB_PROBE_TIMEOUT = 3
# The Redis probe writes this key (a write, like the rate limiter's counts), briefly.
REDIS_PROBE_KEY = "saga:health:probe"
REDIS_PROBE_TTL_MS = 10_000


def _elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def database_check() -> dict:
    """`SELECT 1` over a fresh connection with a short connect timeout."""
    started = time.monotonic()
    probe = _probe_connection()
    try:
        with probe.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        state = "ok"
    except Exception:  # any failure to reach or query the database means "down"
        state = "down"
    finally:
        probe.close()
    return {"status": state, "latency_ms": _elapsed_ms(started)}


def _probe_connection():
    params = copy.deepcopy(connections["default"].settings_dict)
    if connections["default"].vendor == "postgresql":
        timeout = min(DB_PROBE_TIMEOUT, settings.DB_CONNECT_TIMEOUT)
        params.setdefault("OPTIONS", {})["connect_timeout"] = timeout
    params["CONN_MAX_AGE"] = 0
    backend = load_backend(params["ENGINE"])
    return backend.DatabaseWrapper(params, alias="health_probe")


def redis_check() -> dict:
    """Redis itself, now: a short-lived write with the shared fail-fast client. "ok" when
    it is stored; "degraded" when Redis answers but refuses writes (e.g. a read-only
    replica: the rate limiter's counts fail and requests pass uncounted); "down" when it
    does not answer; "disabled" (not a failure) when REDIS_HOST is not configured.

    The outcome feeds the process's one breaker: a failure makes the limiter skip Redis
    for a moment, a success lets it count again. While the breaker is open (a failure
    less than a second ago) the last failure is reported without another call, so a dead
    Redis never makes health slow."""
    client = redis_client()
    if client is None:
        return {"status": "disabled", "latency_ms": None}
    breaker = redis_breaker()
    started = time.monotonic()
    if breaker.open():
        return {"status": _failure_state(breaker.last_error), "latency_ms": _elapsed_ms(started)}
    try:
        client.set(REDIS_PROBE_KEY, "1", px=REDIS_PROBE_TTL_MS)
    except redis.RedisError as error:
        breaker.failed(error)
        return {"status": _failure_state(error), "latency_ms": _elapsed_ms(started)}
    breaker.succeeded()
    return {"status": "ok", "latency_ms": _elapsed_ms(started)}


def _failure_state(error: Exception | None) -> str:
    """An error answer (READONLY, OOM…) means Redis is there but refuses to count."""
    return "degraded" if isinstance(error, redis.ResponseError) else "down"


def workers_check(database_up: bool) -> dict:
    """Live saga workers (heartbeat younger than 3 intervals); "unknown" without a DB."""
    if not database_up:
        return {"status": "unknown", "alive": None, "latency_ms": None}
    started = time.monotonic()
    alive = selectors.workers_alive()
    return {
        "status": "ok" if alive else "down",
        "alive": alive,
        "latency_ms": _elapsed_ms(started),
    }


def health_report() -> dict:
    """Overall: "down" without PostgreSQL; "degraded" when Redis is down or degraded, or
    when no worker is alive."""
    database = database_check()
    database_up = database["status"] == "ok"
    checks = {
        "database": database,
        "redis": redis_check(),
        "workers": workers_check(database_up),
    }
    if not database_up:
        overall = "down"
    elif checks["redis"]["status"] in ("down", "degraded") or checks["workers"]["status"] == "down":
        overall = "degraded"
    else:
        overall = "ok"
    return {"status": overall, "checks": checks}
