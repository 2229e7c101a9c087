"""`python manage.py run_saga_worker [--concurrency N] [--grace-seconds S]`."""

import os
import signal
import threading
import time

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from saga_orchestrator import prometheus
from saga_orchestrator.secrets import require_production_secrets
from sagas.engine.worker import Worker


class Command(BaseCommand):
    help = "Run a saga worker: claim due sagas, call participants, record every transition."

    def add_arguments(self, parser):
        parser.add_argument(
            "--concurrency", type=int, default=4, help="sagas run at once (threads); default 4"
        )
        parser.add_argument(
            "--grace-seconds",
            type=float,
            default=30.0,
            help="on SIGTERM/SIGINT, how long calls in flight may finish; default 30",
        )

    def handle(self, *args, **options):
        try:
            require_production_secrets()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc))
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        worker = Worker(concurrency=options["concurrency"], grace_seconds=options["grace_seconds"])

        def stop(signum, frame):
            worker.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        usage_reporter_start(worker.heartbeat_seconds)
        try:
            worker.run()
        finally:
            # Its counts move into the metrics archive; its marker and live gauges go.
            prometheus.process_finished(os.getpid())


def usage_reporter_start(every: float) -> None:
    """Mark this process `worker` and rewrite its memory and CPU into its marker every
    heartbeat: a scrape answered in another container reads them there."""
    prometheus.process_mark("worker")

    def report():
        while True:
            time.sleep(every)
            prometheus.marker_touch("worker", every=every / 2)

    threading.Thread(target=report, name="saga-usage-reporter", daemon=True).start()
