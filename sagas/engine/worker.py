"""The worker: N threads claiming and running sagas, one keeper (leases, heartbeat).

A boring loop per thread: `tick()` claims one due saga and runs it as far as it goes;
when there was nothing to do the thread sleeps until a wake-up, a known due time or the
poll interval. Signals only set a flag: threads stop claiming, sagas in hand are handed
back after their current call, and the process exits within the grace period.
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

from sagas.engine.claim import Claimed, next_due_at, saga_claim
from sagas.engine.executor import PlanCache, Runtime, saga_run
from sagas.engine.locks import saga_locks_from_settings
from sagas.engine.record import Lease, lease_release, lease_renew
from sagas.engine.store import GroupWriter
from sagas.engine.wakeup import Wakeups, listener_start, wake_workers
from sagas.models import TERMINAL_STATUSES, WorkerHeartbeat

logger = logging.getLogger("sagas.engine")

# A saga whose Redis lock is held elsewhere, or that raised unexpectedly, is retried later.
LOCK_BUSY_DELAY = 1.0
ERROR_DELAY = 5.0
DB_ERRORS = (DatabaseError, InterfaceError)
# Idle threads of a process share one look at the next due time within this many seconds
# (each look is a query; a busy worker's threads go idle hundreds of times a second).
LOOK_SHARED_SECONDS = 0.05


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
        self.wakeups = Wakeups(
            poll_seconds=poll_seconds or settings.SAGA_WORKER_POLL_SECONDS, capacity=concurrency
        )
        self.locks = saga_locks_from_settings(self.lease_seconds)
        self.runtime = Runtime(
            owner=self.worker_id,
            lease_seconds=self.lease_seconds,
            plans=PlanCache(),
            stopping=self.stopping.is_set,
            released=self.wakeups.due,
            writer=GroupWriter(),
        )
        self._held: dict[str, Lease] = {}
        self._held_lock = threading.Lock()
        self._look_lock = threading.Lock()
        self._looked_at = float("-inf")
        self._looked_due = None
        self._thread = threading.local()  # per thread: a finished saga's lock to release

    # One unit of work -------------------------------------------------------------

    def tick(self) -> bool:
        """Claim one due saga and run it as far as it goes now; False when none was due."""
        if self.stopping.is_set():
            return False
        claimed = saga_claim(
            owner=self.worker_id, now=timezone.now(), lease_seconds=self.lease_seconds
        )
        if claimed is None:
            self._finished_release()  # out of work: nothing to share the round trip with
            return False
        lease = claimed.lease
        if not self.locks.acquire(lease.saga_id, lease.token, release=self._finished_take()):
            # A previous holder may still be mid-call: let its lock run out first.
            lease_release(lease=lease, now=timezone.now(), delay_seconds=LOCK_BUSY_DELAY)
            return True
        self._hold(lease)
        status = None
        try:
            status = self._run(claimed)
        finally:
            self._unhold(lease)
            if status in TERMINAL_STATUSES:
                # Nothing will claim a finished saga (but a retry request): its lock goes
                # with this thread's next acquire, one round trip for both, or before the
                # thread idles.
                self._thread.finished = (lease.saga_id, lease.token)
            else:
                self.locks.release(lease.saga_id, lease.token)
        return True

    def _finished_take(self) -> tuple | None:
        finished = getattr(self._thread, "finished", None)
        self._thread.finished = None
        return finished

    def _finished_release(self) -> None:
        finished = self._finished_take()
        if finished is not None:
            self.locks.release(*finished)

    def _run(self, claimed: Claimed) -> str | None:
        lease = claimed.lease
        try:
            return saga_run(claimed, self.runtime)
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
            return None

    def _hold(self, lease: Lease) -> None:
        with self._held_lock:
            self._held[str(lease.saga_id)] = lease

    def _unhold(self, lease: Lease) -> None:
        with self._held_lock:
            self._held.pop(str(lease.saga_id), None)

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
            self._finished_release()
            _connection_drop()

    def _idle(self) -> None:
        """Sleep until work may be due: one cheap look per wake, not a claim attempt."""
        self._finished_release()
        while not self.stopping.is_set():
            try:
                due = self._next_due()
            except DB_ERRORS:
                _connection_drop()
                return
            self.wakeups.due(due)  # (one already due still gets a 5 ms pause: no spinning)
            if self.wakeups.wait():
                return  # woken: new work was announced
            if due is not None and due <= timezone.now():
                return  # its time has come: claim it

    def _next_due(self):
        """When the earliest waiting saga becomes due: a recent look by another idle thread
        of this process when it still says "later" (or "nothing"), else a fresh look.

        A saga scheduled by another process in between is found at the next look, as it
        would be if no thread happened to look then: sagas this process releases are told
        to the Wakeups directly, new and resumed ones by a notification.
        """
        now = time.monotonic()
        with self._look_lock:
            due, fresh = self._looked_due, now - self._looked_at < LOOK_SHARED_SECONDS
            if fresh and (due is None or due > timezone.now()):
                return due
            self._looked_at = now
        due = next_due_at()
        with self._look_lock:
            self._looked_due = due
        return due

    def stop(self) -> None:
        """Stop claiming; called from a signal handler, so it only sets flags."""
        self.stopping.set()
        self.wakeups.notify_all()

    def run(self) -> int:
        """Serve until stopped; then hand back or finish within the grace period."""
        started_at = timezone.now()
        self._heartbeat(started_at)
        self.runtime.writer.start()
        threads = [
            threading.Thread(target=self.serve, name=f"saga-worker-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        listener_start(self.wakeups, self.stopping)
        logger.info(
            "saga worker started",
            extra={"worker_id": self.worker_id, "concurrency": self.concurrency},
        )
        keep_every = min(self.heartbeat_seconds, self.lease_seconds / 3)
        while not self.stopping.is_set():
            self.stopping.wait(keep_every)
            self._keep(started_at)
        self._drain(threads, started_at, keep_every)
        self.runtime.writer.stop()
        _safely(lambda: WorkerHeartbeat.objects.filter(worker_id=self.worker_id).delete())
        logger.info("saga worker stopped", extra={"worker_id": self.worker_id})
        return 0

    def _drain(self, threads, started_at, keep_every) -> None:
        deadline = time.monotonic() + self.grace_seconds
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            for thread in threads:
                thread.join(timeout=min(keep_every, max(deadline - time.monotonic(), 0)))
                if time.monotonic() >= deadline:
                    break
            self._keep(started_at)
        busy = sum(t.is_alive() for t in threads)
        if busy:
            # Their calls are still in flight: their leases run out and another worker
            # re-sends those calls with the same Idempotency-Key.
            logger.warning("grace period over with %d sagas in flight", busy)
        wake_workers()

    # Keeper ------------------------------------------------------------------------

    def _keep(self, started_at) -> None:
        """Renew the leases of sagas in hand, and beat the heartbeat."""
        with self._held_lock:
            leases = list(self._held.values())
        now = timezone.now()
        for lease in leases:
            renewed = _safely(
                lambda lease=lease: lease_renew(
                    lease=lease, now=now, lease_seconds=self.lease_seconds
                )
            )
            if renewed is False:
                lease.lost = True
            self.locks.renew(lease.saga_id, lease.token)
        self._heartbeat(started_at)

    def _heartbeat(self, started_at) -> None:
        def beat():
            now = timezone.now()
            updated = WorkerHeartbeat.objects.filter(worker_id=self.worker_id).update(
                last_seen_at=now
            )
            if not updated:
                WorkerHeartbeat.objects.create(
                    worker_id=self.worker_id,
                    hostname=socket.gethostname()[:200],
                    pid=os.getpid(),
                    started_at=started_at,
                    last_seen_at=now,
                )

        _safely(beat)


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
