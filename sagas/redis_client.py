"""The one Redis client factory (REDIS_HOST/PORT/PASSWORD/DB, and TLS with REDIS_SSL and
REDIS_SSL_CA_CERTS), for every user of Redis: the rate limiter, the request-metric buckets,
the engine's per-saga locks, the health probe.

Redis is optional (DESIGN §2): without REDIS_HOST `redis_client()` is None and callers use
their in-process fallback. Every user degrades when Redis is unreachable rather than wait
for it, so clients fail fast: socket timeouts of REDIS_SOCKET_TIMEOUT (default 0.5 s), and
no retry loop — redis-py 8's default retries a refused connection with backoff for about
3–5 s, which would stall every request while Redis is down.

One breaker per process and configuration (`redis_breaker()`) is shared by every user:
after a failure they skip Redis for RETRY_SECONDS instead of each paying a timeout, and any
user's success (a counted request, the figures flusher, the status page, the health probe)
closes it. `OutageWarning` is how a user says what the outage costs it, once per interval
rather than once per request.
"""

import functools
import logging
import threading
import time

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("sagas.redis")

# After a failure, users skip Redis this long instead of each paying a timeout.
RETRY_SECONDS = 1.0
# A user's "Redis unreachable" warning is logged at most once per interval (per process).
WARNING_INTERVAL_SECONDS = 60.0


class Breaker:
    """Whether Redis failed lately (per process). `open()` while it failed less than
    RETRY_SECONDS ago; `down` until some call succeeds again; `last_error` says how."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down = False
        self.skip_until = 0.0
        self.last_error: Exception | None = None

    def open(self) -> bool:
        return self.down and time.monotonic() < self.skip_until

    def failed(self, error: Exception) -> None:
        with self.lock:
            self.down = True
            self.skip_until = time.monotonic() + RETRY_SECONDS
            self.last_error = error

    def succeeded(self) -> None:
        if not self.down:
            return  # the usual case: no lock taken
        with self.lock:
            was_down, self.down = self.down, False
        if was_down:
            logger.info("Redis reachable again", extra={"event": "redis_ok"})


class OutageWarning:
    """One user's warning that Redis failed (what it does instead), logged at most once
    per `interval` seconds per process, not once per request."""

    def __init__(
        self, logger: logging.Logger, message: str, *, event: str, interval: float | None = None
    ) -> None:
        self.logger, self.message, self.event = logger, message, event
        self.interval = WARNING_INTERVAL_SECONDS if interval is None else interval
        self.lock = threading.Lock()
        self.warned_at: float | None = None

    def failed(self, error: Exception) -> None:
        now = time.monotonic()
        with self.lock:
            if self.warned_at is not None and now - self.warned_at < self.interval:
                return
            self.warned_at = now
        self.logger.warning(
            self.message, extra={"event": self.event, "error": type(error).__name__}
        )


def redis_client() -> redis.Redis | None:
    """The shared client for the current settings, or None when REDIS_HOST is unset."""
    if not settings.REDIS_HOST:
        return None
    return redis_client_for(**_configuration())


def redis_breaker() -> Breaker:
    """The shared breaker of the current settings' Redis (unused without REDIS_HOST)."""
    return breaker_for(**_configuration())


def _configuration() -> dict:
    configuration = {
        "host": settings.REDIS_HOST,
        "port": settings.REDIS_PORT,
        "password": settings.REDIS_PASSWORD,
        "db": settings.REDIS_DB,
        "timeout": settings.REDIS_SOCKET_TIMEOUT,
    }
    if settings.REDIS_SSL:
        # Only then: the cache key of a plain configuration stays as short as it was
        # (this runs several times per request).
        configuration.update(ssl=True, ssl_ca_certs=settings.REDIS_SSL_CA_CERTS)
    return configuration


@functools.cache
def breaker_for(**configuration) -> Breaker:
    """One breaker per process and Redis configuration (the keys of redis_client_for)."""
    return Breaker()


@functools.cache
def redis_client_for(
    *,
    host: str,
    port: int,
    password: str = "",
    db: int = 0,
    timeout: float,
    ssl: bool = False,
    ssl_ca_certs: str = "",
) -> redis.Redis:
    """A fail-fast client; one connection pool per process and configuration (redis-py's
    pool notices a fork, e.g. Gunicorn workers, and reconnects in the child).

    With `ssl` the server's certificate and host name are verified (redis-py's defaults,
    stated here so they cannot drift) against `ssl_ca_certs`, or the system's CAs."""
    tls = {}
    if ssl:
        tls = {
            "ssl": True,
            "ssl_ca_certs": ssl_ca_certs or None,
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
        }
    return redis.Redis(
        host=host,
        port=port,
        password=password or None,
        db=db,
        **tls,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One immediate retry on a connection error heals a pooled connection that a Redis
        # restart closed (a refused reconnect fails in microseconds). Timeouts are not
        # retried: an unreachable host costs one timeout, not two.
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
    )
