"""`python manage.py cleanup_sagas [--older-than-days N] [--batch-size M] [--dry-run]`.

Deletes finished sagas (completed, compensated, cancelled, failed) whose `finished_at` is
older than N days (default SAGA_RETENTION_DAYS), with their attempt logs, a batch at a time:
each batch is one short transaction, so no lock is held for long and the API and the
workers keep running. Unfinished sagas are never touched.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from sagas.models import TERMINAL_STATUSES, SagaAttempt, SagaInstance

# Bounds that keep the numbers inside what datetime and SQL can hold (a larger value
# would raise OverflowError or "out of range" instead of a clear message).
MAX_DAYS = 36_600  # a century
MAX_BATCH_SIZE = 100_000


def expired_sagas(*, cutoff: datetime):
    return SagaInstance.objects.filter(status__in=TERMINAL_STATUSES, finished_at__lt=cutoff)


def sagas_delete_batch(*, cutoff: datetime, batch_size: int) -> tuple[int, int]:
    """Delete up to `batch_size` expired sagas and their attempts; (sagas, attempts)."""
    with transaction.atomic():
        # Lock the batch (skipping rows another transaction holds): a `retry` of a failed
        # saga waits for this short transaction instead of racing it.
        ids = list(
            expired_sagas(cutoff=cutoff)
            .select_for_update(skip_locked=True)
            .order_by("finished_at")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return 0, 0
        sagas = SagaInstance.objects.filter(id__in=ids)
        attempts, _ = SagaAttempt.objects.filter(saga__in=sagas).delete()
        deleted, _ = sagas.delete()
    return deleted, attempts


class Command(BaseCommand):
    help = "Delete finished sagas and their attempt logs older than N days, in batches."

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help="Retention in days (default: SAGA_RETENTION_DAYS).",
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, help="Sagas per transaction (default 1000)."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )

    def handle(self, *args, older_than_days, batch_size, dry_run, **options):
        days = settings.SAGA_RETENTION_DAYS if older_than_days is None else older_than_days
        if not 0 <= days <= MAX_DAYS:
            raise CommandError(f"--older-than-days must be between 0 and {MAX_DAYS}")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
        cutoff = timezone.now() - timedelta(days=days)
        if dry_run:
            self.report_dry_run(cutoff=cutoff, days=days)
            return
        sagas = attempts = batches = 0
        while True:
            deleted, deleted_attempts = sagas_delete_batch(cutoff=cutoff, batch_size=batch_size)
            if not deleted:
                break
            sagas, attempts, batches = sagas + deleted, attempts + deleted_attempts, batches + 1
        kept = SagaInstance.objects.exclude(status__in=TERMINAL_STATUSES).count()
        self.stdout.write(
            f"Deleted {sagas} finished sagas and {attempts} attempt log rows finished before "
            f"{cutoff.isoformat()} (older than {days} days) in {batches} batches; "
            f"{kept} unfinished sagas kept."
        )

    def report_dry_run(self, *, cutoff: datetime, days: int) -> None:
        sagas = expired_sagas(cutoff=cutoff)
        attempts = SagaAttempt.objects.filter(saga__in=sagas).count()
        self.stdout.write(
            f"Dry run: would delete {sagas.count()} finished sagas and {attempts} attempt log "
            f"rows finished before {cutoff.isoformat()} (older than {days} days)."
        )
