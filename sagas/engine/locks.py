"""Per-saga Redis locks beside the database lease (defence in depth, DESIGN §2).

The lease token in PostgreSQL is the real guarantee (every write is fenced on it). The
Redis lock keeps a second worker from even starting a call while a holder whose database
lease lapsed (a network partition, a long pause) might still be calling. It is redis-py's
own `Lock` (SET NX PX to take it; its token-checked scripts to extend and release it),
valued by the lease token. When Redis is unreachable the engine runs on the database lease
alone: the process's one Redis-outage breaker (sagas/redis_client.py) makes every user skip
Redis for a moment instead of each paying a timeout. Without REDIS_HOST (embedded default)
there is no lock to take.
"""

import logging
import uuid

import redis
from redis.exceptions import LockError

from sagas.redis_client import Breaker, redis_breaker, redis_client

logger = logging.getLogger("sagas.engine")


def lock_key(saga_id) -> str:
    return f"saga:lock:{saga_id}"


class HeldLock:
    """A saga's lock as this worker holds it; `lock` is None when Redis was not there."""

    def __init__(self, locks: "SagaLocks", lock: redis.lock.Lock | None):
        self.locks = locks
        self.lock = lock

    def renew(self) -> None:
        if self.lock is not None:
            self.locks.call(lambda: self.lock.extend(self.locks.ttl_seconds, replace_ttl=True))

    def release(self) -> None:
        if self.lock is not None:
            self.locks.call(self.lock.release)


class SagaLocks:
    """`acquire()` a saga's lock by its id, valued by the lease token."""

    def __init__(self, client: redis.Redis | None, ttl_seconds: float, breaker=None):
        self.client = client
        self.ttl_seconds = ttl_seconds
        # A client of its own (tests) gets a breaker of its own.
        self.breaker = breaker or Breaker()

    def acquire(self, saga_id, token: uuid.UUID) -> HeldLock | None:
        """None only when Redis answers that another holder has the lock."""
        if self.client is None:
            return HeldLock(self, None)
        # Not thread-local: the lease keeper's thread extends the locks of worker threads.
        lock = self.client.lock(lock_key(saga_id), timeout=self.ttl_seconds, thread_local=False)
        taken = self.call(lambda: lock.acquire(blocking=False, token=str(token)))
        if taken is False:
            return None
        return HeldLock(self, lock if taken else None)

    def call(self, command):
        """The command's answer, or None when Redis is unreachable (or the breaker says
        it was a moment ago). A lock no longer ours is no outage: it ran out (the lease
        fences every write) and there is nothing to give back."""
        if self.client is None or self.breaker.open():
            return None
        try:
            answer = command()
        except LockError:
            return None
        except redis.RedisError as exc:
            if not self.breaker.down:
                logger.warning("Redis unreachable, using database leases alone: %s", exc)
            self.breaker.failed(exc)
            return None
        self.breaker.succeeded()
        return answer


def saga_locks_from_settings(ttl_seconds: float) -> SagaLocks:
    """Locks on the process's shared, fail-fast client and its one breaker."""
    client = redis_client()
    return SagaLocks(client, ttl_seconds, redis_breaker() if client is not None else None)
