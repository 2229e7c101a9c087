"""Reads the API has no counterpart for: the last hour's starts, minute by minute, for the
status page's charts (its finishes and figures are sagas.selectors.finished_since() and
saga_stats()), and the list of a definition's versions."""

from datetime import datetime

from django.db.models import QuerySet

from sagas.models import SagaDefinition, SagaInstance


def sagas_started_since(*, since: datetime) -> list[datetime]:
    """Creation times of the sagas created since `since` (the created_at index)."""
    return list(
        SagaInstance.objects.filter(created_at__gte=since)
        .values_list("created_at", flat=True)
        .iterator()
    )


def definition_versions(*, name: str) -> QuerySet[SagaDefinition]:
    """Every version of `name`, newest first (the unique index on name and version)."""
    return (
        SagaDefinition.objects.filter(name=name)
        .order_by("-version")
        .only("name", "version", "created_at")
    )
