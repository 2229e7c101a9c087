"""Where a worker thread goes when there was nothing to claim: a look, then a sleep.

The look (`next_due_at()`) finds when the earliest waiting saga becomes due, including
those other processes scheduled; the sleep (wakeup.py) ends at a notification, that time,
or the poll interval. The threads of a process share the look: a busy worker's threads go
idle hundreds of times a second, and a look taken by another thread of the process less
than LOOK_SHARED_SECONDS ago already told the sleepers its due time. (Measured with
`make bench`: sharing saves ~0.5 database transactions per saga and ~6 % of the worker's
CPU; docs/performance.md.)
"""

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.utils import timezone

from sagas.engine.wakeup import Wakeups

LOOK_SHARED_SECONDS = 0.05
# A saga found due that the claim just missed is being claimed by another thread (or
# arrived since): claim again after this pause rather than spin.
RECLAIM_PAUSE = timedelta(seconds=0.005)


class IdleWait:
    def __init__(self, wakeups: Wakeups, look: Callable[[], datetime | None]):
        self.wakeups = wakeups
        self.look = look
        self._lock = threading.Lock()
        self._looked_at = float("-inf")

    def wait(self, stopping: threading.Event) -> None:
        """Look (unless another thread just did) and sleep, until a notification or a due
        time says to claim. A sleep that ends at the poll interval looks again rather than
        claim: a look is a read, a claim a write. Errors of the look are the caller's."""
        while not stopping.is_set():
            if self._my_turn():
                due = self.look()
                if due is not None:
                    self.wakeups.due(max(due, timezone.now() + RECLAIM_PAUSE))
            if self.wakeups.wait():
                return

    def _my_turn(self) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._looked_at < LOOK_SHARED_SECONDS:
                return False
            self._looked_at = now
            return True
