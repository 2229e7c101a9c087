"""API request figures of the last hour, across every Gunicorn worker and API node, for the
status alerts (DESIGN §7: API response time > 2 s, error rate > 5 %).

Each response adds to the current minute's bucket: a Redis hash `saga:api:<minute>` with
fields `requests`, `errors` and `seconds`, written in one pipelined round trip (HINCRBY,
HINCRBYFLOAT, EXPIRE; no MULTI) and expiring after the hour it is read for. The status page
sums the last 60 buckets (the current, partial minute included) in one more round trip.

An *error* is a 5xx response: the service failed. 4xx answers (bad input, a missing key,
the rate limit) are the client's doing and never raise the alert.

Each process also keeps the same buckets in memory. Without Redis (embedded default), or
while Redis is unreachable, the status reports this process's own figures (`scope`
"process" instead of "cluster"), and requests skip Redis for a moment after a failure
instead of each paying a timeout. Recording never raises.
"""

import logging
import threading
import time

import redis

from sagas.redis_client import redis_client

logger = logging.getLogger("sagas.metrics")

REDIS_KEY_PREFIX = "saga:api:"
BUCKET_SECONDS = 60
BUCKETS = 60  # the last hour
# A bucket outlives the hour it is read for by a margin (clock skew between nodes).
BUCKET_TTL_SECONDS = BUCKET_SECONDS * (BUCKETS + 2)
REDIS_RETRY_SECONDS = 1.0
WARNING_INTERVAL_SECONDS = 60.0


def is_error(status: int) -> bool:
    return status >= 500


class _LocalBuckets:
    """This process's minute buckets: minute → [requests, errors, seconds]."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[int, list[float]] = {}

    def add(self, minute: int, error: bool, seconds: float) -> None:
        with self.lock:
            bucket = self.buckets.get(minute)
            if bucket is None:
                bucket = self.buckets[minute] = [0, 0, 0.0]
                self._prune(minute)
            bucket[0] += 1
            bucket[1] += error
            bucket[2] += seconds

    def totals(self, minute: int) -> tuple[int, int, float]:
        with self.lock:
            recent = [b for m, b in self.buckets.items() if minute - BUCKETS < m <= minute]
        return _sum(recent)

    def _prune(self, minute: int) -> None:
        for old in [m for m in self.buckets if m <= minute - BUCKETS]:
            del self.buckets[old]


class _Breaker:
    """Skip Redis briefly after a failure; warn at most once per interval (per process)."""

    def __init__(self) -> None:
        self.skip_until = 0.0
        self.warned_at = float("-inf")

    def open(self) -> bool:
        return time.monotonic() < self.skip_until

    def failed(self, error: Exception) -> None:
        now = time.monotonic()
        self.skip_until = now + REDIS_RETRY_SECONDS
        if now - self.warned_at >= WARNING_INTERVAL_SECONDS:
            self.warned_at = now
            logger.warning(
                "request figures: Redis unreachable, status shows this process only",
                extra={"event": "request_stats_degraded", "error": type(error).__name__},
            )


_local = _LocalBuckets()
_breaker = _Breaker()


def _minute(now: float | None) -> int:
    return int((time.time() if now is None else now) // BUCKET_SECONDS)


def _sum(buckets) -> tuple[int, int, float]:
    requests = sum(int(b[0] or 0) for b in buckets)
    errors = sum(int(b[1] or 0) for b in buckets)
    seconds = sum(float(b[2] or 0) for b in buckets)
    return requests, errors, seconds


def request_record(*, status: int, duration_s: float, now: float | None = None) -> None:
    """Count one answered request in its minute (here and, when reachable, in Redis)."""
    try:
        minute, error, seconds = _minute(now), is_error(status), max(duration_s, 0.0)
        _local.add(minute, error, seconds)
        client = redis_client()
        if client is None or _breaker.open():
            return
        key = f"{REDIS_KEY_PREFIX}{minute}"
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(key, "requests", 1)
        if error:
            pipe.hincrby(key, "errors", 1)
        pipe.hincrbyfloat(key, "seconds", seconds)
        pipe.expire(key, BUCKET_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError as exc:
        _breaker.failed(exc)
    except Exception:  # a figure must never fail the request it describes
        logger.warning("request figure not recorded", exc_info=True)


def request_figures(*, now: float | None = None) -> dict:
    """The last hour: requests, error rate (5xx) and average response time.

    `scope` is "cluster" (every process, from Redis) or "process" (this one only: no
    Redis configured, or unreachable); `redis` is "ok", "down" or "disabled".
    """
    minute = _minute(now)
    client = redis_client()
    totals, scope, redis_state = None, "process", "disabled"
    if client is not None:
        totals = _redis_totals(client, minute)
        redis_state = "down" if totals is None else "ok"
        scope = "process" if totals is None else "cluster"
    if totals is None:
        totals = _local.totals(minute)
    requests, errors, seconds = totals
    return {
        "requests": requests,
        "error_rate": round(errors / requests, 4) if requests else None,
        "avg_response_ms": round(seconds * 1000 / requests, 1) if requests else None,
        "scope": scope,
        "redis": redis_state,
    }


def _redis_totals(client, minute: int) -> tuple[int, int, float] | None:
    try:
        pipe = client.pipeline(transaction=False)
        for m in range(minute - BUCKETS + 1, minute + 1):
            pipe.hmget(f"{REDIS_KEY_PREFIX}{m}", "requests", "errors", "seconds")
        return _sum(pipe.execute())
    except redis.RedisError as exc:
        _breaker.failed(exc)
        return None
