"""Worker heartbeats: each worker process beats a row; the one rule of who is alive.

Alive = a heartbeat younger than ALIVE_INTERVALS heartbeat intervals. /health/detailed/,
/api/sagas/status/, /metrics and `saga_worker_alive` all ask `workers_alive()`.
"""

import os
import socket
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from sagas.models import WorkerHeartbeat

ALIVE_INTERVALS = 3


def workers_alive(*, now: datetime | None = None, hostname: str | None = None) -> QuerySet:
    """The heartbeats of the workers alive at `now` (on `hostname`, if given)."""
    window = timedelta(seconds=ALIVE_INTERVALS * settings.SAGA_WORKER_HEARTBEAT_SECONDS)
    alive = WorkerHeartbeat.objects.filter(last_seen_at__gt=(now or timezone.now()) - window)
    return alive if hostname is None else alive.filter(hostname=hostname)


class Heartbeat:
    """One worker process's row: `beat()` every interval, `remove()` on a clean exit."""

    def __init__(self, worker_id: str):
        self.worker_id = worker_id
        self.started_at = timezone.now()

    def beat(self) -> None:
        now = timezone.now()
        mine = WorkerHeartbeat.objects.filter(worker_id=self.worker_id)
        if not mine.update(last_seen_at=now):
            WorkerHeartbeat.objects.create(
                worker_id=self.worker_id,
                hostname=socket.gethostname()[:200],
                pid=os.getpid(),
                started_at=self.started_at,
                last_seen_at=now,
            )

    def remove(self) -> None:
        WorkerHeartbeat.objects.filter(worker_id=self.worker_id).delete()
