"""A saga's history rows (DESIGN §9.2), written by the statement or transaction that
writes the change they describe: on PostgreSQL a part of the same data-modifying
statement (`history_sql`), on SQLite inserts in the same transaction (`history_insert`).
"""

# ruff: noqa: S608

import json

from django.core.serializers.json import DjangoJSONEncoder

from sagas.engine.store import dialect
from sagas.models import SagaEvent

HISTORY = SagaEvent._meta.db_table
COLUMNS = ("at", "event", "step", "actor", "key_id", "reason", "details")
RECORD = (
    "at timestamptz, event text, step text, actor text, key_id text, reason text, details jsonb"
)


def recordset_insert(
    table: str,
    target: str,
    source: str,
    param: str,
    record: str,
    columns: tuple[str, ...],
    constants: dict[str, str] | None = None,
) -> str:
    """PostgreSQL: INSERT into `table` one row per element of the JSON list parameter
    `param` (typed by `record`), in its order, for the saga `target` of `source` (e.g.
    "saga.id" and "FROM saga" inside a transition's CTE, or a parameter and ""). Columns
    of `constants` get the same SQL value on every row."""
    constants = constants or {}
    names = ", ".join(columns)
    values = ", ".join([*(f"r.{c}" for c in columns), *constants.values()])
    return (
        f"INSERT INTO {table} (saga_id, {names}{''.join(', ' + c for c in constants)})"
        f" SELECT {target}, {values} {source}{', ' if source else ' FROM '}"
        f"ROWS FROM (jsonb_to_recordset(%({param})s::jsonb) AS ({record}))"
        f" WITH ORDINALITY AS r({names}, n) ORDER BY r.n"
    )


def history_sql(saga_id: str, source: str) -> str:
    """PostgreSQL: INSERT the events of the `events` parameter (a JSON list, in order) for
    the saga `saga_id` of `source` (e.g. "saga.id" and "FROM saga")."""
    return recordset_insert(HISTORY, saga_id, source, "events", RECORD, COLUMNS)


def history_params(events: list[dict]) -> dict:
    return {"events": json.dumps(events, cls=DjangoJSONEncoder)}


def history_insert(saga_id, events: list[dict]) -> None:
    """The events of one saga, in order, inside the caller's transaction (both databases)."""
    if not events:
        return
    if dialect.is_postgresql():
        saga = dialect.adapt(SagaEvent, "saga", saga_id)
        params = history_params(events) | {"saga_id": saga}
        dialect.execute(history_sql("%(saga_id)s::uuid", ""), params)
        return
    columns = ", ".join(COLUMNS)
    values = ", ".join(f"%({c})s" for c in COLUMNS)
    sql = f"INSERT INTO {HISTORY} (saga_id, {columns}) VALUES (%(saga_id)s, {values})"
    for event in events:
        params = {c: dialect.adapt(SagaEvent, c, event.get(c)) for c in COLUMNS}
        params["saga_id"] = dialect.adapt(SagaEvent, "saga", saga_id)
        dialect.execute(sql, params)
