"""The worker: N threads claiming and running sagas; the main thread keeps leases and
the heartbeat.

A boring loop per thread: `tick()` claims one due saga, takes its Redis lock, and runs it
as far as it goes (executor.py) while the lease keeper keeps its lease alive; when there
was nothing to do the thread looks at the next due time and sleeps until a wake-up, that
time or the poll interval (idle.py, wakeup.py). Signals only set a flag: threads stop claiming,
sagas in hand are handed back after their current call, and the process exits within the
grace period.
"""

import contextlib
import logging
import os
import socket
import threading
import time
import uuid

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection
from django.utils import timezone

from sagas.engine.delivery import Delivery
from sagas.engine.executor import PlanCache, Runtime, saga_run
from sagas.engine.heartbeat import Heartbeat
from sagas.engine.idle import IdleWait
from sagas.engine.lease_keeper import LeaseKeeper
from sagas.engine.locks import saga_locks_from_settings
from sagas.engine.store import Claimed, GroupWriter, lease_release, next_due_at, saga_claim
from sagas.engine.store.outbox import WRITTEN
from sagas.engine.wakeup import Wakeups, listener_start, wake_workers

logger = logging.getLogger("sagas.engine")

# A saga whose Redis lock is held elsewhere, or that raised unexpectedly, is retried later.
LOCK_BUSY_DELAY = 1.0
ERROR_DELAY = 5.0
DB_ERRORS = (DatabaseError, InterfaceError)


class Worker:
    def __init__(
        self,
        *,
        concurrency: int = 1,
        grace_seconds: float = 30.0,
        poll_seconds: float | None = None,
        lease_seconds: float | None = None,
        heartbeat_seconds: float | None = None,
    ):
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.concurrency = concurrency
        self.grace_seconds = grace_seconds
        self.lease_seconds = lease_seconds or settings.SAGA_LEASE_SECONDS
        self.heartbeat_seconds = heartbeat_seconds or settings.SAGA_WORKER_HEARTBEAT_SECONDS
        self.stopping = threading.Event()
        poll_seconds = poll_seconds or settings.SAGA_WORKER_POLL_SECONDS
        self.wakeups = Wakeups(poll_seconds=poll_seconds, capacity=concurrency)
        # Lifecycle webhooks: their own thread, so a slow receiver never delays a saga.
        self.delivery = Delivery(lease_seconds=self.lease_seconds, poll_seconds=poll_seconds)
        self.locks = saga_locks_from_settings(self.lease_seconds)
        self.keeper = LeaseKeeper(self.lease_seconds)
        self.heartbeat = Heartbeat(self.worker_id)
        self.idle = IdleWait(self.wakeups, next_due_at)
        self.runtime = Runtime(
            owner=self.worker_id,
            lease_seconds=self.lease_seconds,
            plans=PlanCache(),
            stopping=self.stopping.is_set,
            released=self.wakeups.due,
            writer=GroupWriter(),
        )

    # One unit of work -------------------------------------------------------------

    def tick(self) -> bool:
        """Claim one due saga and run it as far as it goes now; False when none was due."""
        if self.stopping.is_set():
            return False
        claimed = saga_claim(
            owner=self.worker_id, now=timezone.now(), lease_seconds=self.lease_seconds
        )
        if claimed is None:
            return False
        lease = claimed.lease
        lock = self.locks.acquire(lease.saga_id, lease.token)
        if lock is None:
            # A previous holder may still be mid-call: let its lock run out first.
            lease_release(lease=lease, now=timezone.now(), delay_seconds=LOCK_BUSY_DELAY)
            return True
        try:
            with self.keeper.hold(lease, lock):
                self._run(claimed)
        finally:
            lock.release()
        return True

    def _run(self, claimed: Claimed) -> None:
        lease = claimed.lease
        try:
            saga_run(claimed, self.runtime)
        except DB_ERRORS:
            raise  # the database is down: the thread backs off; the lease runs out
        except Exception:
            # One saga's bug must not kill the worker: log it, try the saga again later.
            logger.exception(
                "saga raised unexpectedly; rescheduled",
                extra={
                    "saga_id": str(lease.saga_id),
                    "definition": lease.definition,
                    "request_id": lease.request_id,
                },
            )
            lease_release(lease=lease, now=timezone.now(), delay_seconds=ERROR_DELAY)

    # Threads ------------------------------------------------------------------------

    def serve(self) -> None:
        """One worker thread: tick while there is work, sleep when there is none."""
        backoff = 0.1
        try:
            while not self.stopping.is_set():
                try:
                    worked = self.tick()
                    backoff = 0.1
                except DB_ERRORS as exc:
                    logger.warning("database unavailable, retrying in %.1f s: %s", backoff, exc)
                    _connection_drop()
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if not worked:
                    self._idle()
        finally:
            _connection_drop()

    def _idle(self) -> None:
        try:
            self.idle.wait(self.stopping)
        except DB_ERRORS:
            _connection_drop()  # the next claim backs off if the database is still down

    def stop(self) -> None:
        """Stop claiming; called from a signal handler, so it only sets flags."""
        self.stopping.set()
        self.wakeups.notify_all()
        WRITTEN.set()  # the delivery thread's idle wait

    def run(self) -> int:
        """Serve until stopped; then hand back or finish within the grace period."""
        _safely(self.heartbeat.beat)
        self.runtime.writer.start()
        threads = [
            threading.Thread(target=self.serve, name=f"saga-worker-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        delivery = threading.Thread(
            target=self.delivery.serve, args=(self.stopping,), name="saga-webhooks", daemon=True
        )
        for thread in [*threads, delivery]:
            thread.start()
        listener_start(self.wakeups, self.stopping)
        logger.info(
            "saga worker started",
            extra={"worker_id": self.worker_id, "concurrency": self.concurrency},
        )
        keep_every = min(self.heartbeat_seconds, self.lease_seconds / 3)
        while not self.stopping.wait(keep_every):
            self._keep()
        self._drain(threads, keep_every)
        # A delivery in flight ends within its timeout; else its lease lets another send it.
        delivery.join(timeout=self.delivery.timeout)
        self.runtime.writer.stop()
        _safely(self.heartbeat.remove)
        logger.info("saga worker stopped", extra={"worker_id": self.worker_id})
        return 0

    def _keep(self) -> None:
        """The main thread's one job while threads work: leases, then the heartbeat."""
        _safely(self.keeper.renew)
        _safely(self.heartbeat.beat)

    def _drain(self, threads, keep_every) -> None:
        """Wait up to the grace period for the threads' calls in flight, keeping leases."""
        deadline = time.monotonic() + self.grace_seconds
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            for thread in threads:
                thread.join(timeout=min(keep_every, max(deadline - time.monotonic(), 0)))
                if time.monotonic() >= deadline:
                    break
            self._keep()
        busy = sum(t.is_alive() for t in threads)
        if busy:
            # Their calls are still in flight: their leases run out and another worker
            # re-sends those calls with the same Idempotency-Key.
            logger.warning("grace period over with %d sagas in flight", busy)
        wake_workers()


def _safely(action):
    """Run a keeper action; a database outage is logged, not fatal."""
    try:
        return action()
    except DB_ERRORS as exc:
        logger.warning("keeper: database unavailable: %s", exc)
        _connection_drop()
        return None


def _connection_drop() -> None:
    with contextlib.suppress(*DB_ERRORS):
        connection.close()
