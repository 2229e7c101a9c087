"""The lease keeper: renews the leases (and Redis locks) of the sagas a worker has in hand.

Worker threads `hold()` a saga while they run it; the keeper, from the worker's main
thread and its own database connection, pushes every held lease out every
SAGA_LEASE_SECONDS / 3, so a renewal never waits behind a call or another saga's write.
A renewal that finds another token marks the lease lost: its thread stops at its next
step and records nothing (every write is fenced on the token anyway).
"""

import contextlib
import threading

from django.utils import timezone

from sagas.engine.locks import HeldLock
from sagas.engine.store import Lease, lease_renew


class LeaseKeeper:
    def __init__(self, lease_seconds: float):
        self.lease_seconds = lease_seconds
        self._held: dict[str, tuple[Lease, HeldLock]] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, lease: Lease, lock: HeldLock):
        """Keep `lease` (and `lock`) alive while the block runs."""
        key = str(lease.saga_id)
        with self._lock:
            self._held[key] = (lease, lock)
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(key, None)

    def renew(self) -> None:
        """Renew every held lease and lock once (database errors are the caller's)."""
        with self._lock:
            held = list(self._held.values())
        now = timezone.now()
        for lease, lock in held:
            if not lease_renew(lease=lease, now=now, lease_seconds=self.lease_seconds):
                lease.lost = True
            lock.renew()
