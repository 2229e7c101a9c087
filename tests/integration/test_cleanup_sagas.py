"""`manage.py cleanup_sagas` on both databases: finished and old go; sagas that wait for an
operator (`failed`, `paused`) and unfinished ones stay, with their attempt logs."""

import logging
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from sagas.models import SagaAttempt, SagaDefinition, SagaEvent, SagaInstance
from tests.builders import definition_create, saga_create

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def cleanup(*args: str) -> str:
    out = StringIO()
    call_command("cleanup_sagas", *args, stdout=out)
    return out.getvalue()


def ids(sagas) -> set:
    return {saga.id for saga in sagas}


def attempts_of(sagas) -> int:
    return SagaAttempt.objects.filter(saga_id__in=ids(sagas)).count()


@pytest.fixture
def sagas():
    definition = definition_create()
    old = [
        saga_create(definition, status=status, finished_days_ago=40, attempts=2)
        for status in ("completed", "compensated", "cancelled", "completed")
    ]
    recent = saga_create(definition, status="completed", finished_days_ago=5, attempts=1)
    old_failed = saga_create(definition, status="failed", finished_days_ago=40, attempts=2)
    recent_failed = saga_create(definition, status="failed", finished_days_ago=5, attempts=1)
    # An old `finished_at` on a paused saga's row must not matter.
    paused = saga_create(definition, status="paused", finished_days_ago=40, attempts=2)
    unfinished = [
        saga_create(definition, status=status, attempts=3)
        for status in ("pending", "running", "compensating")
    ]
    return {
        "old": old,
        "recent": recent,
        "old_failed": old_failed,
        "recent_failed": recent_failed,
        "paused": paused,
        "unfinished": unfinished,
    }


def test_deletes_old_finished_sagas_and_their_logs_in_batches(sagas):
    output = cleanup("--older-than-days", "30", "--batch-size", "3")
    assert "Deleted 4 finished sagas and 8 attempt log rows" in output
    assert "in 2 batches" in output
    assert "kept 2 sagas waiting for an operator (1 failed older than the cutoff, 1 paused)" in (
        output
    )
    assert "3 unfinished sagas kept" in output
    kept = [sagas["recent"], sagas["old_failed"], sagas["recent_failed"], sagas["paused"]]
    assert set(SagaInstance.objects.values_list("id", flat=True)) == ids(kept + sagas["unfinished"])
    assert attempts_of(sagas["old"]) == 0
    assert attempts_of([sagas["old_failed"]]) == 2  # the operator still reads why it failed
    assert attempts_of([sagas["paused"]]) == 2
    assert SagaAttempt.objects.count() == 1 + 2 + 1 + 2 + 3 * 3
    assert SagaDefinition.objects.count() == 1  # definitions are kept


def test_the_history_goes_with_its_saga(sagas):
    for saga in [*sagas["old"], sagas["paused"]]:
        SagaEvent.objects.create(saga=saga, at=timezone.now(), event="started", actor="client")
    cleanup("--older-than-days", "30")
    assert list(SagaEvent.objects.values_list("saga_id", flat=True)) == [sagas["paused"].id]


def test_include_failed_deletes_old_failed_sagas_and_their_logs(sagas):
    output = cleanup("--older-than-days", "30", "--include-failed")
    assert "Deleted 5 finished sagas and 10 attempt log rows" in output
    assert "kept 1 sagas waiting for an operator (0 failed older than the cutoff, 1 paused)" in (
        output
    )
    assert not SagaInstance.objects.filter(id=sagas["old_failed"].id).exists()
    assert attempts_of([sagas["old_failed"], *sagas["old"]]) == 0
    # A failed saga younger than the retention stays, and so does every paused one.
    assert SagaInstance.objects.get(id=sagas["recent_failed"].id).status == "failed"
    assert attempts_of([sagas["recent_failed"]]) == 1
    assert attempts_of([sagas["paused"]]) == 2


def test_paused_sagas_are_never_deleted_by_age(sagas):
    output = cleanup("--older-than-days", "0", "--include-failed")
    assert "0 failed older than the cutoff, 1 paused" in output
    remaining = SagaInstance.objects.values_list("status", flat=True)
    assert sorted(remaining) == ["compensating", "paused", "pending", "running"]
    assert attempts_of([sagas["paused"]]) == 2


def test_the_log_line_says_what_was_deleted_and_kept(sagas, caplog):
    caplog.set_level(logging.INFO, logger="sagas.cleanup")
    cleanup("--older-than-days", "30")
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "saga_cleanup"]
    assert record.name == "sagas.cleanup"
    assert (record.deleted_sagas, record.deleted_attempts) == (4, 8)
    assert (record.kept_failed, record.kept_paused, record.kept_unfinished) == (1, 1, 3)
    assert record.include_failed is False
    assert record.older_than_days == 30


def test_unfinished_sagas_are_kept_whatever_their_age(sagas):
    SagaInstance.objects.filter(status__in=["pending", "running", "compensating"]).update(
        created_at="2000-01-01T00:00:00Z"
    )
    cleanup("--older-than-days", "0", "--include-failed")
    assert set(SagaInstance.objects.values_list("id", flat=True)) >= ids(sagas["unfinished"])
    assert attempts_of(sagas["unfinished"]) == 3 * 3


def test_dry_run_deletes_nothing(sagas):
    output = cleanup("--older-than-days", "30", "--dry-run")
    assert "would delete 4 finished sagas and 8 attempt log rows" in output
    assert "would keep 2 sagas waiting for an operator (1 failed" in output
    output = cleanup("--older-than-days", "30", "--dry-run", "--include-failed")
    assert "would delete 5 finished sagas and 10 attempt log rows" in output
    assert SagaInstance.objects.count() == 11
    assert SagaAttempt.objects.count() == 4 * 2 + 1 + 2 + 1 + 2 + 3 * 3


@override_settings(SAGA_RETENTION_DAYS=3)
def test_default_is_saga_retention_days(sagas):
    output = cleanup()
    assert "older than 3 days" in output
    assert "Deleted 5 finished sagas" in output
    assert "(2 failed older than the cutoff, 1 paused)" in output


def test_the_longest_retention_runs(sagas):
    assert "older than 36600 days" in cleanup(
        "--older-than-days", "36600", "--batch-size", "100000"
    )


def test_nothing_to_do():
    output = cleanup()
    assert "Deleted 0 finished sagas and 0 attempt log rows" in output
    assert "kept 0 sagas waiting for an operator" in output


@pytest.mark.parametrize(
    "args",
    [
        ["--batch-size", "0"],
        ["--older-than-days", "-1"],
        ["--older-than-days", str(10**30)],
        ["--older-than-days", str(2**63)],
        ["--older-than-days", "36601"],
        ["--batch-size", str(10**30)],
    ],
)
def test_bad_arguments(args):
    with pytest.raises(CommandError):
        cleanup(*args)
