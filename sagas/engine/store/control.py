"""Writes from outside the worker (cancel, retry): the row read under a lock, then one
UPDATE of the named columns, inside the caller's transaction (engine/control.py)."""

# ruff: noqa: S608

from django.utils import timezone

from sagas.engine.store import dialect
from sagas.models import SagaInstance

SAGA = SagaInstance._meta.db_table


def saga_locked(saga_id) -> SagaInstance:
    """The saga, its row locked until the caller's transaction ends (SELECT … FOR UPDATE on
    PostgreSQL; SQLite's transaction holds the write lock from its start)."""
    return SagaInstance.objects.select_for_update().get(id=saga_id)


def saga_update(saga: SagaInstance, columns: list[str]) -> None:
    """Write `columns` of `saga` (and `updated_at`) to its row."""
    saga.updated_at = timezone.now()
    columns = [*columns, "updated_at"]
    assignments = ", ".join(f"{column} = %({column})s" for column in columns)
    params = {
        column: dialect.adapt(SagaInstance, column, getattr(saga, column)) for column in columns
    }
    params["id"] = dialect.adapt(SagaInstance, "id", saga.id)
    sql = f"UPDATE {SAGA} SET {assignments} WHERE id = %(id)s"
    dialect.execute(sql, params)
