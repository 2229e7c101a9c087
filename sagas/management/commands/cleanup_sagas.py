"""`python manage.py cleanup_sagas [--older-than-days N] [--batch-size M] [--dry-run]
[--include-failed]`.

Deletes finished sagas (completed, compensated, cancelled) whose `finished_at` is older
than N days (default SAGA_RETENTION_DAYS), with their attempt logs, a batch at a time: each
batch is one short transaction, so no lock is held for long and the API and the workers
keep running. Unfinished sagas are never touched. Sagas that wait for an operator are kept
whatever their age and counted in the output: `failed` ones (a compensation that could not
succeed; `--include-failed` deletes the old ones too) and `paused` ones (never deleted by
age).
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from sagas.models import TERMINAL_STATUSES, SagaAttempt, SagaEvent, SagaInstance, SagaStatus

logger = logging.getLogger("sagas.cleanup")

# Bounds that keep the numbers inside what datetime and SQL can hold (a larger value
# would raise OverflowError or "out of range" instead of a clear message).
MAX_DAYS = 36_600  # a century
MAX_BATCH_SIZE = 100_000

PAUSED = SagaStatus.PAUSED  # not terminal; named here too, so that no change to the
# terminal statuses can ever make a paused saga deletable by age


def deletable_statuses(*, include_failed: bool) -> list[str]:
    """Finished statuses old sagas are deleted in: `failed` waits for an operator's retry."""
    kept = {PAUSED} if include_failed else {PAUSED, SagaStatus.FAILED}
    return [status for status in TERMINAL_STATUSES if status not in kept]


def expired_sagas(*, cutoff: datetime, include_failed: bool):
    statuses = deletable_statuses(include_failed=include_failed)
    return SagaInstance.objects.filter(status__in=statuses, finished_at__lt=cutoff)


def sagas_kept_for_operator(*, cutoff: datetime, include_failed: bool) -> dict[str, int]:
    """Sagas kept because they wait for an operator: old `failed` ones, every `paused` one."""
    failed = 0
    if not include_failed:
        failed = SagaInstance.objects.filter(
            status=SagaStatus.FAILED, finished_at__lt=cutoff
        ).count()
    return {"failed": failed, "paused": SagaInstance.objects.filter(status=PAUSED).count()}


def sagas_delete_batch(
    *, cutoff: datetime, batch_size: int, include_failed: bool
) -> tuple[int, int]:
    """Delete up to `batch_size` expired sagas with their attempts and history rows;
    (sagas, attempts)."""
    with transaction.atomic():
        # Lock the batch (skipping rows another transaction holds): a `retry` of a failed
        # saga waits for this short transaction instead of racing it.
        ids = list(
            expired_sagas(cutoff=cutoff, include_failed=include_failed)
            .select_for_update(skip_locked=True)
            .order_by("finished_at")
            .values_list("id", flat=True)[:batch_size]
        )
        if not ids:
            return 0, 0
        sagas = SagaInstance.objects.filter(id__in=ids)
        attempts, _ = SagaAttempt.objects.filter(saga__in=sagas).delete()
        SagaEvent.objects.filter(saga__in=sagas).delete()
        deleted, _ = sagas.delete()
    return deleted, attempts


def kept_text(kept: dict[str, int]) -> str:
    total = kept["failed"] + kept["paused"]
    return (
        f"{total} sagas waiting for an operator "
        f"({kept['failed']} failed older than the cutoff, {kept['paused']} paused)"
    )


class Command(BaseCommand):
    help = (
        "Delete finished sagas and their attempt logs older than N days, in batches; "
        "failed and paused sagas are kept."
    )

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
        parser.add_argument(
            "--include-failed",
            action="store_true",
            help="Delete old failed sagas too (paused sagas are never deleted by age).",
        )

    def handle(self, *args, older_than_days, batch_size, dry_run, include_failed, **options):
        days = settings.SAGA_RETENTION_DAYS if older_than_days is None else older_than_days
        if not 0 <= days <= MAX_DAYS:
            raise CommandError(f"--older-than-days must be between 0 and {MAX_DAYS}")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}")
        cutoff = timezone.now() - timedelta(days=days)
        if dry_run:
            self.report_dry_run(cutoff=cutoff, days=days, include_failed=include_failed)
            return
        sagas = attempts = batches = 0
        while True:
            deleted, deleted_attempts = sagas_delete_batch(
                cutoff=cutoff, batch_size=batch_size, include_failed=include_failed
            )
            if not deleted:
                break
            sagas, attempts, batches = sagas + deleted, attempts + deleted_attempts, batches + 1
        kept = sagas_kept_for_operator(cutoff=cutoff, include_failed=include_failed)
        unfinished = SagaInstance.objects.exclude(status__in=[*TERMINAL_STATUSES, PAUSED]).count()
        self.stdout.write(
            f"Deleted {sagas} finished sagas and {attempts} attempt log rows finished before "
            f"{cutoff.isoformat()} (older than {days} days) in {batches} batches; "
            f"kept {kept_text(kept)}; {unfinished} unfinished sagas kept."
        )
        logger.info(
            "sagas cleaned up",
            extra={
                "event": "saga_cleanup",
                "deleted_sagas": sagas,
                "deleted_attempts": attempts,
                "batches": batches,
                "older_than_days": days,
                "include_failed": include_failed,
                "kept_failed": kept["failed"],
                "kept_paused": kept["paused"],
                "kept_unfinished": unfinished,
            },
        )

    def report_dry_run(self, *, cutoff: datetime, days: int, include_failed: bool) -> None:
        sagas = expired_sagas(cutoff=cutoff, include_failed=include_failed)
        attempts = SagaAttempt.objects.filter(saga__in=sagas).count()
        kept = sagas_kept_for_operator(cutoff=cutoff, include_failed=include_failed)
        self.stdout.write(
            f"Dry run: would delete {sagas.count()} finished sagas and {attempts} attempt log "
            f"rows finished before {cutoff.isoformat()} (older than {days} days); "
            f"would keep {kept_text(kept)}."
        )
