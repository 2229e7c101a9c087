"""Group commit: one thread per worker process commits the transitions of many sagas in
one transaction.

A worker thread hands its transition to the writer and waits: the writer takes everything
queued at that moment — no timer, so an idle worker commits at once — writes each item as
its own fenced statement (each returns its row count: a stale lease writes nothing and is
told so), commits, and only then lets the threads go on to their next calls ("recorded
before the call" holds for every saga of the batch; a kill -9 before the COMMIT leaves
none of it written). If any statement fails (one saga's unstorable value, say), the batch
is rolled back and each item is written again in a transaction of its own, so only that
saga sees the error. Lease renewals and claims never pass through here: they run on their
own threads' connections.

Until `start()` (and after `stop()`) a write runs in the caller's thread, one transaction
per transition: `Worker.tick()` driven directly, as the tests do, needs no writer thread.
"""

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import DatabaseError, InterfaceError, connection, transaction

logger = logging.getLogger("sagas.engine")

# Enough to share a commit among all the threads of a busy worker.
MAX_BATCH = 64
_STOP = object()


@dataclass
class _Item:
    write: Callable[[], int]
    done: threading.Event = field(default_factory=threading.Event)
    written: int = 0
    error: BaseException | None = None


class GroupWriter:
    def __init__(self, max_batch: int = MAX_BATCH):
        self.max_batch = max_batch
        self.batches = 0  # committed transactions (for the tests and the curious)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="saga-writer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then end the thread (later writes run inline)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(_STOP)
        thread.join()

    def write(self, write: Callable[[], int]) -> int:
        """Run `write` (its rows written) in a committed transaction; its error if it
        failed on its own."""
        item = _Item(write)
        with self._lock:
            running = self._thread is not None
            if running:
                self._queue.put(item)
        if not running:
            with transaction.atomic():
                return write()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.written

    def _serve(self) -> None:
        try:
            while True:
                batch = self._take()
                stop = _STOP in batch
                self._commit([item for item in batch if item is not _STOP])
                if stop:
                    return
        finally:
            with contextlib.suppress(DatabaseError, InterfaceError):
                connection.close()

    def _take(self) -> list:
        """The first item (waiting for it), then whatever else is queued right now."""
        batch = [self._queue.get()]
        while len(batch) < self.max_batch and batch[-1] is not _STOP:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _commit(self, batch: list[_Item]) -> None:
        if not batch:
            return
        try:
            with transaction.atomic():
                for item in batch:
                    item.written = item.write()
            self.batches += 1
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                connection.close_if_unusable_or_obsolete()  # e.g. the database restarted
            else:
                self._one_by_one(batch)
        finally:
            for item in batch:
                item.done.set()

    def _one_by_one(self, batch: list[_Item]) -> None:
        """The batch failed as a whole: each item in its own transaction, so an error is
        only its own saga's."""
        connection.close_if_unusable_or_obsolete()  # the batch may have lost it
        for item in batch:
            item.written, item.error = 0, None
            try:
                with transaction.atomic():
                    item.written = item.write()
                self.batches += 1
            except Exception as exc:
                item.error = exc
                connection.close_if_unusable_or_obsolete()
