"""Wake idle workers when work becomes due, so pickup takes milliseconds, not a poll.

PostgreSQL LISTEN/NOTIFY carries the signal: `wake_workers()` sends a NOTIFY (delivered
when the sending transaction commits, so a worker never wakes before the saga is visible),
and each worker process keeps one listening connection that wakes one idle thread per
notification. Polling (SAGA_WORKER_POLL_SECONDS) remains the safety net; on SQLite it is
the only mechanism, with a short default interval.
"""

import logging
import select
import threading
import time
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.utils import timezone

logger = logging.getLogger("sagas.engine")

CHANNEL = "saga_wake"
KEEPALIVE_SECONDS = 30.0


def wake_workers() -> None:
    """Tell idle workers that a saga became due. Best effort: polling is the safety net."""
    if connection.vendor != "postgresql":
        return
    try:
        if connection.in_atomic_block:
            # A savepoint, so a failed NOTIFY cannot break the caller's transaction.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
    except DatabaseError as exc:
        logger.warning("could not wake workers: %s", exc)


class Wakeups:
    """Where idle worker threads wait: for a notification, the earliest known due time, or
    the poll interval.

    Due times come from idle threads' looks and from sagas this process released; the
    first sleeper to reach one takes it (the others sleep on), so one due saga wakes one
    thread, not all of them.
    """

    def __init__(self, *, poll_seconds: float, capacity: int):
        self.poll_seconds = poll_seconds
        self.capacity = capacity
        self._cond = threading.Condition()
        self._tokens = 0
        self._due_at: datetime | None = None

    def notify(self, count: int = 1) -> None:
        with self._cond:
            self._tokens = min(self.capacity, self._tokens + count)
            self._cond.notify(count)

    def notify_all(self) -> None:
        with self._cond:
            self._tokens = self.capacity
            self._cond.notify_all()

    def due(self, when: datetime | None) -> None:
        """Remember that work becomes due at `when`."""
        if when is None:
            return
        with self._cond:
            if self._due_at is None or when < self._due_at:
                self._due_at = when
                self._cond.notify()  # one sleeper recomputes its timeout; no one looks

    def wait(self) -> bool:
        """Sleep until a notification or the earliest known due time (True: claim), or
        the poll interval (False: look again)."""
        deadline = time.monotonic() + self.poll_seconds
        with self._cond:
            while self._tokens == 0:
                until_due = self._until_due()
                if until_due == 0:
                    return True
                timeout = min(deadline - time.monotonic(), until_due)
                if timeout <= 0:
                    return False
                self._cond.wait(timeout)
            self._tokens -= 1
            return True

    def _until_due(self) -> float:
        """Seconds until the known due time; 0 when it came, and then this thread takes it."""
        if self._due_at is None:
            return float("inf")
        until = (self._due_at - timezone.now()).total_seconds()
        if until <= 0:
            self._due_at = None
            return 0.0
        return until


class WakeupListener(threading.Thread):
    """LISTEN on a dedicated connection; each notification wakes one idle thread."""

    def __init__(self, wakeups: Wakeups, stopping: threading.Event, database=None):
        super().__init__(name="saga-wakeup-listener", daemon=True)
        self.wakeups = wakeups
        self.stopping = stopping
        # The Django connection whose settings the listener copies (default: "default").
        self.database = database if database is not None else connections[DEFAULT_DB_ALIAS]

    def run(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                self._listen()
                backoff = 0.5
            except Exception as exc:  # a lost connection: reconnect; polling covers the gap
                logger.warning("wake-up listener reconnecting: %s", exc)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _listen(self) -> None:
        import psycopg2

        conn = psycopg2.connect(**listener_params(self.database))
        try:
            conn.autocommit = True
            conn.cursor().execute(f"LISTEN {CHANNEL}")
            self.wakeups.notify_all()  # anything sent while we were not listening
            quiet = 0.0
            while not self.stopping.is_set():
                ready, _, _ = select.select([conn], [], [], 1.0)
                if not ready:
                    quiet += 1.0
                    if quiet >= KEEPALIVE_SECONDS:
                        # A silently dead connection would never say so: ask, and
                        # reconnect (in run()) if the question fails.
                        conn.cursor().execute("SELECT 1")
                        quiet = 0.0
                    continue
                quiet = 0.0
                conn.poll()
                if conn.notifies:
                    count = len(conn.notifies)
                    conn.notifies.clear()
                    self.wakeups.notify(count)
        finally:
            conn.close()


def listener_params(database) -> dict:
    """The parameters Django itself connects with (OPTIONS included: sslmode, sslrootcert,
    connect_timeout…), so the listening connection is as encrypted and verified as every
    other; only the application name differs, to tell it apart in pg_stat_activity."""
    params = database.get_connection_params()
    params.pop("cursor_factory", None)  # Django's cursor class; the listener needs none
    params["application_name"] = "saga-worker-listener"
    return params


def listener_start(wakeups: Wakeups, stopping: threading.Event) -> WakeupListener | None:
    if connection.vendor != "postgresql":
        return None
    listener = WakeupListener(wakeups, stopping)
    listener.start()
    return listener
