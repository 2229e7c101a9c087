"""`python manage.py saga_worker_alive`: exit 0 when a saga worker on this host is alive.

The saga_worker container's health check. Alive = a WorkerHeartbeat row with this host's
name alive by the rule of sagas/engine/heartbeat.py (as /health/detailed/ and /metrics).
"""

import socket

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sagas.engine.heartbeat import ALIVE_INTERVALS, workers_alive


class Command(BaseCommand):
    help = "Exit 0 if a saga worker on this host sent a heartbeat recently, else 1."

    def add_arguments(self, parser):
        parser.add_argument(
            "--hostname", default=socket.gethostname(), help="Host to check (default: this one)."
        )

    def handle(self, *args, hostname, **options):
        count = workers_alive(hostname=hostname).count()
        if not count:
            window = ALIVE_INTERVALS * settings.SAGA_WORKER_HEARTBEAT_SECONDS
            raise CommandError(f"no heartbeat from a worker on {hostname} in the last {window:g}s")
        self.stdout.write(f"{count} saga worker(s) alive on {hostname}")
