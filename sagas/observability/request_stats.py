"""API request figures of the last hour, across every Gunicorn worker and API node, for the
status alerts (DESIGN §7: API response time > 2 s, error rate > 5 %).

Each response adds to the current minute's bucket: a Redis hash `saga:api:<minute>` with
fields `requests`, `errors` and `seconds` (HINCRBY, HINCRBYFLOAT, EXPIRE), expiring after
the hour it is read for. The status page sums the last 60 buckets (the current, partial
minute included) in one round trip.

A response's figures cost no I/O on the request's path: they wait in the process
(`pending`) and a small per-process flusher thread writes them, at most every
FLUSH_SECONDS, in one MULTI/EXEC pipeline for all pending minutes. The rate limiter's
script carries nothing of them (sagas/api/throttling.py). Reading the figures (the status
page) writes nothing: it adds this process's pending figures to what Redis holds, so the
page counts every request this process answered before it, and other processes' requests
within their flush interval.

An *error* is a 5xx response: the service failed. 4xx answers (bad input, a missing key,
the rate limit) are the client's doing and never raise the alert.

Each process also keeps the same buckets in memory. Without Redis (embedded default), or
while Redis is unreachable, the status reports this process's own figures (`scope`
"process" instead of "cluster"), and requests skip Redis for a moment after a failure
(the process's one breaker, sagas/redis_client.py) instead of each paying a timeout.
Recording never raises.
"""

import logging
import os
import threading
import time

import redis

from sagas.redis_client import OutageWarning, redis_breaker, redis_client

logger = logging.getLogger("sagas.observability.metrics")

REDIS_KEY_PREFIX = "saga:api:"
BUCKET_SECONDS = 60
BUCKETS = 60  # the last hour
# A bucket outlives the hour it is read for by a margin (clock skew between nodes).
BUCKET_TTL_SECONDS = BUCKET_SECONDS * (BUCKETS + 2)
# Pending figures are written on their own at the latest this long after the response.
FLUSH_SECONDS = 0.5


def is_error(status: int) -> bool:
    return status >= 500


class _LocalBuckets:
    """This process's minute buckets: minute → [requests, errors, seconds]; and the part
    of them not yet written to Redis (`pending`, same shape)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[int, list[float]] = {}
        self.pending: dict[int, list[float]] = {}

    def add(self, minute: int, error: bool, seconds: float, shared: bool = False) -> None:
        with self.lock:
            bucket = self.buckets.get(minute)
            if bucket is None:
                bucket = self.buckets[minute] = [0, 0, 0.0]
                self._prune(minute)
            bucket[0] += 1
            bucket[1] += error
            bucket[2] += seconds
            if shared:
                _add(self.pending, minute, [1, int(error), seconds])

    def pending_take(self) -> dict[int, list[float]]:
        with self.lock:
            taken, self.pending = self.pending, {}
        return taken

    def pending_restore(self, taken: dict[int, list[float]]) -> None:
        """Put back figures whose write failed (they go with a later write)."""
        with self.lock:
            for minute, figures in taken.items():
                _add(self.pending, minute, figures)

    def totals(self, minute: int) -> tuple[int, int, float]:
        return _sum(self._recent(self.buckets, minute))

    def pending_totals(self, minute: int) -> tuple[int, int, float]:
        return _sum(self._recent(self.pending, minute))

    def _recent(self, buckets: dict[int, list[float]], minute: int) -> list[list[float]]:
        with self.lock:
            return [list(b) for m, b in buckets.items() if minute - BUCKETS < m <= minute]

    def _prune(self, minute: int) -> None:
        for buckets in (self.buckets, self.pending):
            for old in [m for m in buckets if m <= minute - BUCKETS]:
                del buckets[old]


def _add(buckets: dict[int, list[float]], minute: int, figures: list[float]) -> None:
    bucket = buckets.setdefault(minute, [0, 0, 0.0])
    for i, value in enumerate(figures):
        bucket[i] += value


_local = _LocalBuckets()
_warnings = OutageWarning(
    logger,
    "request figures: Redis unreachable, status shows this process only",
    event="request_stats_degraded",
)


def _minute(now: float | None) -> int:
    return int((time.time() if now is None else now) // BUCKET_SECONDS)


def _sum(buckets) -> tuple[int, int, float]:
    requests = sum(int(b[0] or 0) for b in buckets)
    errors = sum(int(b[1] or 0) for b in buckets)
    seconds = sum(float(b[2] or 0) for b in buckets)
    return requests, errors, seconds


def request_record(*, status: int, duration_s: float, now: float | None = None) -> None:
    """Count one answered request in its minute: here at once (no I/O); in Redis when the
    flusher next writes, within FLUSH_SECONDS."""
    try:
        minute, error, seconds = _minute(now), is_error(status), max(duration_s, 0.0)
        shared = redis_client() is not None
        _local.add(minute, error, seconds, shared=shared)
        if shared:
            _flusher.ensure()
    except Exception:  # a figure must never fail the request it describes
        logger.warning("request figure not recorded", exc_info=True)


def pending_write() -> None:
    """Write this process's pending figures now, in one MULTI/EXEC pipeline (all or
    nothing, so a failed write is put back whole, never counted twice); never raises."""
    client = redis_client()
    if client is None or redis_breaker().open():
        return
    with _writing:
        taken = _local.pending_take()
        if not taken:
            return
        try:
            _bucket_writes(client, taken).execute()
        except redis.RedisError as exc:
            _local.pending_restore(taken)
            _redis_failed(exc)
            return
        except Exception:
            _local.pending_restore(taken)
            logger.warning("request figures not written", exc_info=True)
            return
    redis_breaker().succeeded()


def _bucket_writes(client: redis.Redis, taken: dict[int, list[float]]):
    pipe = client.pipeline(transaction=True)
    for minute, (requests, errors, seconds) in taken.items():
        key = f"{REDIS_KEY_PREFIX}{minute}"
        pipe.hincrby(key, "requests", int(requests))
        if errors:
            pipe.hincrby(key, "errors", int(errors))
        pipe.hincrbyfloat(key, "seconds", round(seconds, 6))
        pipe.expire(key, BUCKET_TTL_SECONDS)
    return pipe


# Held while pending figures are taken and written, and while the status page reads Redis
# and this process's pending figures: a read sees each figure once, in Redis or pending,
# never in both or neither.
_writing = threading.Lock()


class _Flusher:
    """One daemon thread per process (started at its first figure, again after a fork)
    that writes the pending figures every FLUSH_SECONDS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None

    def ensure(self) -> None:
        if self.pid == os.getpid():
            return
        with self.lock:
            if self.pid == os.getpid():
                return
            self.pid = os.getpid()
            threading.Thread(target=self._run, name="request-figures", daemon=True).start()

    def _run(self) -> None:
        while _flusher is self:  # (a test may swap the flusher: the old thread ends)
            time.sleep(FLUSH_SECONDS)
            if _flusher is self:
                pending_write()


_flusher = _Flusher()


def request_figures(*, now: float | None = None) -> dict:
    """The last hour: requests, error rate (5xx) and average response time.

    `scope` is "cluster" (every process, from Redis) or "process" (this one only: no
    Redis configured, or unreachable); `redis` is "ok", "down" or "disabled".
    """
    minute = _minute(now)
    client = redis_client()
    totals, scope, redis_state = None, "process", "disabled"
    if client is not None:
        totals = _cluster_totals(client, minute)
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


def _cluster_totals(client, minute: int) -> tuple[int, int, float] | None:
    """Redis's buckets plus this process's figures not yet written there: reads only
    (the flusher writes them), so the status page writes nothing."""
    with _writing:
        if redis_breaker().open():  # (checked under the lock: a flush may just have failed)
            return None
        try:
            written = _redis_buckets(client, minute)
        except redis.RedisError as exc:
            _redis_failed(exc)
            return None
        pending = _local.pending_totals(minute)
    redis_breaker().succeeded()
    return _sum([*written, pending])


def _redis_buckets(client, minute: int) -> list:
    pipe = client.pipeline(transaction=False)
    for m in range(minute - BUCKETS + 1, minute + 1):
        pipe.hmget(f"{REDIS_KEY_PREFIX}{m}", "requests", "errors", "seconds")
    return pipe.execute()


def _redis_failed(error: Exception) -> None:
    redis_breaker().failed(error)
    _warnings.failed(error)
