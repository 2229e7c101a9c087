"""Dependency probes of /health/detailed/: each returns its state and how long it took.

Probes use their own short-lived connections with short timeouts, so a dead dependency
makes the health answer quick rather than hang on the service's normal timeouts.
"""

import copy
import time

import redis
from django.conf import settings
from django.db import connections
from django.db.utils import load_backend

from sagas import selectors
from sagas.redis_client import redis_client
from sagas.throttling import rate_limit_degraded

# The health probe connects with this timeout (seconds) whatever DB_CONNECT_TIMEOUT says.
DB_PROBE_TIMEOUT = 3


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
    """PING Redis with the shared fail-fast client; "disabled" (not a failure) when
    REDIS_HOST is not configured; "degraded" when it answers but the rate limiter's last
    command in this process failed (e.g. a read-only replica) and requests pass uncounted."""
    client = redis_client()
    if client is None:
        return {"status": "disabled", "latency_ms": None}
    started = time.monotonic()
    try:
        client.ping()
        state = "degraded" if rate_limit_degraded() else "ok"
    except redis.RedisError:
        state = "down"
    return {"status": state, "latency_ms": _elapsed_ms(started)}


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
