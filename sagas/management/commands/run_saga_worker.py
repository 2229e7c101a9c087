"""`python manage.py run_saga_worker [--concurrency N] [--grace-seconds S]`."""

import os
import signal
import threading

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
        reporter_stop = usage_reporter_start(worker.heartbeat_seconds)
        try:
            worker.run()
        finally:
            reporter_stop()  # first: no marker is written after it is removed
            # Its counts move into the metrics archive; its marker and live gauges go.
            prometheus.process_finished(os.getpid())


def usage_reporter_start(every: float):
    """Mark this process `worker` and rewrite its memory and CPU into its marker every
    heartbeat (a scrape answered in another container reads them there); returns the
    function that stops it, once a write in progress is over."""
    prometheus.process_mark("worker")
    done, writing = threading.Event(), threading.Lock()

    def report():
        while not done.wait(every):
            with writing:
                if not done.is_set():
                    prometheus.marker_touch("worker", every=every / 2)

    def stop():
        with writing:
            done.set()

    threading.Thread(target=report, name="saga-usage-reporter", daemon=True).start()
    return stop
