"""`python manage.py saga_worker_alive`: exit 0 when a saga worker on this host is alive.

The saga_worker container's health check. Alive = a WorkerHeartbeat row with this host's
name seen within 3 heartbeat intervals (the rule of /health/detailed/ and /metrics).
"""

import socket
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from sagas.models import WorkerHeartbeat


class Command(BaseCommand):
    help = "Exit 0 if a saga worker on this host sent a heartbeat recently, else 1."

    def add_arguments(self, parser):
        parser.add_argument(
            "--hostname", default=socket.gethostname(), help="Host to check (default: this one)."
        )

    def handle(self, *args, hostname, **options):
        window = 3 * settings.SAGA_WORKER_HEARTBEAT_SECONDS
        horizon = timezone.now() - timedelta(seconds=window)
        alive = WorkerHeartbeat.objects.filter(hostname=hostname, last_seen_at__gte=horizon)
        count = alive.count()
        if not count:
            raise CommandError(f"no heartbeat from a worker on {hostname} in the last {window:g}s")
        self.stdout.write(f"{count} saga worker(s) alive on {hostname}")
