"""`manage.py cleanup_sagas` on PostgreSQL: finished and old go, everything else stays."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from sagas.models import SagaAttempt, SagaDefinition, SagaInstance
from tests.builders import definition_create, saga_create

pytestmark = pytest.mark.django_db


def cleanup(*args: str) -> str:
    out = StringIO()
    call_command("cleanup_sagas", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def sagas():
    definition = definition_create()
    old = [
        saga_create(definition, status=status, finished_days_ago=40, attempts=2)
        for status in ("completed", "compensated", "cancelled", "failed", "completed")
    ]
    recent = saga_create(definition, status="completed", finished_days_ago=5, attempts=1)
    unfinished = [
        saga_create(definition, status=status, attempts=3)
        for status in ("pending", "running", "compensating")
    ]
    return {"old": old, "recent": recent, "unfinished": unfinished}


def test_deletes_old_finished_sagas_and_their_logs_in_batches(sagas):
    output = cleanup("--older-than-days", "30", "--batch-size", "2")
    assert "Deleted 5 finished sagas and 10 attempt log rows" in output
    assert "in 3 batches" in output
    assert "3 unfinished sagas kept" in output
    remaining = set(SagaInstance.objects.values_list("id", flat=True))
    assert remaining == {sagas["recent"].id, *(s.id for s in sagas["unfinished"])}
    assert SagaAttempt.objects.count() == 1 + 3 * 3
    assert SagaDefinition.objects.count() == 1  # definitions are kept


def test_unfinished_sagas_are_kept_whatever_their_age(sagas):
    SagaInstance.objects.filter(status__in=["pending", "running", "compensating"]).update(
        created_at="2000-01-01T00:00:00Z"
    )
    cleanup("--older-than-days", "0")
    assert SagaInstance.objects.count() == 3
    assert set(SagaInstance.objects.values_list("status", flat=True)) == {
        "pending",
        "running",
        "compensating",
    }


def test_dry_run_deletes_nothing(sagas):
    output = cleanup("--older-than-days", "30", "--dry-run")
    assert "would delete 5 finished sagas and 10 attempt log rows" in output
    assert SagaInstance.objects.count() == 9
    assert SagaAttempt.objects.count() == 5 * 2 + 1 + 3 * 3


@override_settings(SAGA_RETENTION_DAYS=3)
def test_default_is_saga_retention_days(sagas):
    output = cleanup()
    assert "older than 3 days" in output
    assert "Deleted 6 finished sagas" in output


def test_the_longest_retention_runs(sagas):
    assert "older than 36600 days" in cleanup(
        "--older-than-days", "36600", "--batch-size", "100000"
    )


def test_nothing_to_do():
    assert "Deleted 0 finished sagas and 0 attempt log rows" in cleanup()


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
