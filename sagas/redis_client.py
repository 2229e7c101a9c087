"""The one Redis client of a process, built from settings (REDIS_HOST/PORT/PASSWORD/DB).

Redis is optional (DESIGN §2): without REDIS_HOST `redis_client()` is None and callers use
their in-process fallback. Socket timeouts are short (REDIS_SOCKET_TIMEOUT) because every
user of Redis here degrades when it is unreachable rather than waiting for it.
"""

import functools

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry


def redis_client() -> redis.Redis | None:
    """The shared client for the current settings, or None when REDIS_HOST is unset."""
    if not settings.REDIS_HOST:
        return None
    return _client(
        settings.REDIS_HOST,
        settings.REDIS_PORT,
        settings.REDIS_PASSWORD,
        settings.REDIS_DB,
        settings.REDIS_SOCKET_TIMEOUT,
    )


@functools.cache
def _client(host: str, port: int, password: str, db: int, timeout: float) -> redis.Redis:
    # One connection pool per process and configuration; redis-py's pool notices a fork
    # (Gunicorn workers) and reconnects in the child.
    return redis.Redis(
        host=host,
        port=port,
        password=password or None,
        db=db,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One immediate retry heals a pooled connection that a Redis restart closed;
        # redis-py's default (several retries with backoff) would stall callers.
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )
