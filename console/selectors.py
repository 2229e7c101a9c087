"""Reads the API has no counterpart for: the last hour's starts and finishes, minute by
minute, for the status page's charts (the figures themselves are
sagas.selectors.saga_stats()), and the list of a definition's versions."""

from datetime import datetime, timedelta

from django.db.models import QuerySet

from sagas.models import TERMINAL_STATUSES, SagaDefinition, SagaInstance

HOUR = timedelta(hours=1)


def sagas_started_since(*, since: datetime) -> list[datetime]:
    """Creation times of the sagas created since `since` (the created_at index)."""
    return list(
        SagaInstance.objects.filter(created_at__gte=since)
        .values_list("created_at", flat=True)
        .iterator()
    )


def sagas_finished_since(*, since: datetime) -> list[tuple[datetime, datetime]]:
    """(created_at, finished_at) of the sagas finished since `since` (the finished_at index)."""
    return list(
        SagaInstance.objects.filter(finished_at__gte=since, status__in=TERMINAL_STATUSES)
        .values_list("created_at", "finished_at")
        .iterator()
    )


def definition_versions(*, name: str) -> QuerySet[SagaDefinition]:
    """Every version of `name`, newest first (the unique index on name and version)."""
    return (
        SagaDefinition.objects.filter(name=name)
        .order_by("-version")
        .only("name", "version", "created_at")
    )
