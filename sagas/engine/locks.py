"""Per-saga Redis locks beside the database lease (defence in depth, DESIGN §2).

The lease token in PostgreSQL is the real guarantee (every write is fenced on it). The
Redis lock keeps a second worker from even starting a call while a holder whose database
lease lapsed (a network partition, a long pause) might still be calling. When Redis is
unreachable the engine runs on the database lease alone, and tries Redis again a few
seconds later. Without REDIS_HOST (embedded default) there is no lock to take.
"""

import logging
import time
import uuid

import redis

from sagas.redis_client import redis_client

logger = logging.getLogger("sagas.engine")

RETRY_REDIS_AFTER = 5.0
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"  # noqa: E501
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"  # noqa: E501


def lock_key(saga_id) -> str:
    return f"saga:lock:{saga_id}"


class SagaLocks:
    """acquire/renew/release keyed by saga id, valued by lease token."""

    def __init__(self, client: redis.Redis | None, ttl_seconds: float):
        self.client = client
        self.ttl_ms = int(ttl_seconds * 1000)
        self._down_until = 0.0

    def acquire(self, saga_id, token: uuid.UUID, release: tuple | None = None) -> bool:
        """False only when Redis answers that another holder has the lock.

        `release`: (saga id, token) of a lock this caller no longer needs, released in the
        same round trip (a finished saga's, see `Worker.tick`)."""
        if release is None:
            taken = self._run(
                lambda c: c.set(lock_key(saga_id), str(token), nx=True, px=self.ttl_ms)
            )
            return taken is not False

        def both(client):
            pipe = client.pipeline(transaction=False)
            pipe.eval(_RELEASE, 1, lock_key(release[0]), str(release[1]))
            pipe.set(lock_key(saga_id), str(token), nx=True, px=self.ttl_ms)
            return pipe.execute()[-1]

        return self._run(both) is not False

    def renew(self, saga_id, token: uuid.UUID) -> None:
        self._run(lambda c: c.eval(_RENEW, 1, lock_key(saga_id), str(token), self.ttl_ms))

    def release(self, saga_id, token: uuid.UUID) -> None:
        self._run(lambda c: c.eval(_RELEASE, 1, lock_key(saga_id), str(token)))

    def _run(self, command):
        """The command's answer (None → False for SET NX), or None when Redis is not there."""
        if self.client is None or time.monotonic() < self._down_until:
            return None
        try:
            answer = command(self.client)
        except redis.RedisError as exc:
            if self._down_until == 0.0:
                logger.warning("Redis unreachable, using database leases alone: %s", exc)
            self._down_until = time.monotonic() + RETRY_REDIS_AFTER
            return None
        if self._down_until:
            logger.info("Redis reachable again: per-saga locks resumed")
            self._down_until = 0.0
        return False if answer is None else answer


def saga_locks_from_settings(ttl_seconds: float) -> SagaLocks:
    """Locks on the process's shared, fail-fast client (sagas/redis_client.py)."""
    return SagaLocks(redis_client(), ttl_seconds)
