"""The start of a saga (POST /api/sagas/): the row, with its steps built from the
definition's, committed before the 202.

On PostgreSQL the definition lookup, the INSERT (with the `started` history row and, when
the definition's `notify` asks for it, the saga.started webhook event) and the NOTIFY to
the workers are one statement (the NOTIFY is delivered when it commits). On
SQLite, the embedded default, the definition is read first and the rows inserted by the
same statements in one transaction; workers there find it by polling (there is no NOTIFY).
"""

# ruff: noqa: S608

import contextlib
import json
import uuid
from datetime import timedelta

from django.db import connection, transaction

from sagas.engine.plan import steps_flat, steps_initial
from sagas.engine.store import dialect
from sagas.engine.store.outbox import OUTBOX, outbox_insert, outbox_rows
from sagas.engine.transitions import history_event
from sagas.engine.wakeup import CHANNEL
from sagas.engine.webhooks import EVENT_TYPES, Notify, SagaFacts, webhook_event
from sagas.models import SagaDefinition, SagaEvent, SagaInstance

SAGA = SagaInstance._meta.db_table
DEFINITION = SagaDefinition._meta.db_table
HISTORY = SagaEvent._meta.db_table
STARTED = (
    f"INSERT INTO {HISTORY} (saga_id, at, event, step, actor, key_id, reason, details)"
    " SELECT id, created_at, 'started', NULL, %(actor)s, %(key_id)s, '', NULL FROM"
)
SAGA_COLUMNS = tuple(field.attname for field in SagaInstance._meta.concrete_fields)
INSERTED = (
    "id, definition_id, definition_name, definition_version, status, input, steps,"
    " current_step, phase, cancel_requested, next_attempt_at, lease_owner,"
    " idempotency_key, request_fingerprint, request_id, traceparent, tracestate, created_at,"
    " deadline_at, updated_at"
)
POSTGRESQL_SQL = f"""
WITH definition AS (
    SELECT id, name, version, timeout_seconds, steps, notify FROM {DEFINITION}
    WHERE name = %(name)s AND (%(version)s::integer IS NULL OR version = %(version)s::integer)
    ORDER BY version DESC
    LIMIT 1
), saga AS (
    INSERT INTO {SAGA} ({INSERTED})
    SELECT %(id)s::uuid, id, name, version, %(status)s, %(input)s::jsonb,
        (SELECT coalesce(jsonb_agg(
                    CASE WHEN step -> 'parallel' IS NULL
                        THEN jsonb_set(%(step)s::jsonb, '{{name}}', step -> 'name')
                        ELSE jsonb_set(%(step)s::jsonb, '{{name}}', member -> 'name')
                            || jsonb_build_object('group', step -> 'name')
                    END ORDER BY n, m),
                '[]'::jsonb)
            FROM jsonb_array_elements(definition.steps) WITH ORDINALITY AS each(step, n)
            -- A parallel group's members in its place (DESIGN §9.3), else the step.
            CROSS JOIN LATERAL jsonb_array_elements(coalesce(step -> 'parallel', '[null]'))
                WITH ORDINALITY AS part(member, m)),
        0, %(phase)s, false, %(now)s::timestamptz, '',
        %(key)s, %(fingerprint)s, %(request_id)s, %(traceparent)s, %(tracestate)s,
        %(now)s::timestamptz,
        %(now)s::timestamptz + make_interval(secs => timeout_seconds), %(now)s::timestamptz
    FROM definition
    RETURNING {", ".join(SAGA_COLUMNS)}
), started AS ({STARTED} saga
), webhook AS (
    INSERT INTO {OUTBOX} (saga_id, event_id, type, url, payload, status, attempts,
        next_attempt_at, created_at)
    SELECT saga.id, %(webhook_id)s::uuid, %(webhook_type)s::text, definition.notify ->> 'url',
        jsonb_set(%(webhook)s::jsonb, '{{definition_version}}', to_jsonb(definition.version)),
        'pending', 0, %(now)s::timestamptz, %(now)s::timestamptz
    FROM saga, definition
    WHERE definition.notify -> 'events' @> jsonb_build_array(%(webhook_type)s::text)
)
SELECT saga.*, pg_notify('{CHANNEL}', '') FROM saga
"""
SQLITE_SQL = f"""
INSERT INTO {SAGA} ({INSERTED})
VALUES (%(id)s, %(definition_id)s, %(definition_name)s, %(definition_version)s, %(status)s,
    %(input)s, %(steps)s, 0, %(phase)s, false, %(now)s, '', %(key)s, %(fingerprint)s,
    %(request_id)s, %(traceparent)s, %(tracestate)s, %(now)s, %(deadline_at)s, %(now)s)
RETURNING {", ".join(SAGA_COLUMNS)}
"""


def saga_insert(*, params: dict) -> SagaInstance | None:
    """Insert a new saga of the named definition (its latest version unless `version`),
    committed (a savepoint inside a caller's transaction); None when there is no such
    definition or version.

    `params`: name, version, id, status, input (JSON text), step (the initial step as JSON
    text; its name is filled in per step), phase, now, key, fingerprint, request_id,
    traceparent, tracestate, actor and key_id (who started it, for the history).
    """
    # On PostgreSQL no transaction of our own outside one: the statement is its own.
    postgresql = dialect.is_postgresql()
    atomic = connection.in_atomic_block or not postgresql
    with transaction.atomic() if atomic else contextlib.nullcontext():
        if postgresql:
            rows = dialect.execute(POSTGRESQL_SQL, params | _started_webhook(params))
        else:
            rows = _sqlite_insert(params)
    if not rows:
        return None
    values = dialect.row_values(SagaInstance, SAGA_COLUMNS, rows[0][: len(SAGA_COLUMNS)])
    return SagaInstance.from_db(connection.alias, SAGA_COLUMNS, list(values.values()))


def _started(params: dict) -> dict:
    return history_event("started", params["now"], actor=params["actor"], key_id=params["key_id"])


def _started_webhook(params: dict) -> dict:
    """PostgreSQL: the saga.started body as if the definition asked for every event; the
    statement keeps it only when its `notify` does, and fills in the version (the
    definition is read by the statement itself, not before it)."""
    saga = SagaFacts(str(params["id"]), params["name"], None, params["status"])
    body = webhook_event(_started(params), saga, Notify("", frozenset(EVENT_TYPES)))
    event_id = str(uuid.uuid4())
    return {
        "webhook_id": event_id,
        "webhook_type": body["type"],
        "webhook": json.dumps({"id": event_id, **body}),
    }


def _sqlite_insert(params: dict) -> list:
    definitions = SagaDefinition.objects.filter(name=params["name"])
    if params["version"] is not None:
        definitions = definitions.filter(version=params["version"])
    definition = definitions.order_by("-version").first()
    if definition is None:
        return []
    steps = steps_initial(steps_flat(definition.steps))
    now = params["now"]
    deadline = now + timedelta(seconds=definition.timeout_seconds)
    values = {
        "id": dialect.adapt(SagaInstance, "id", params["id"]),
        "definition_id": definition.id,
        "definition_name": definition.name,
        "definition_version": definition.version,
        "steps": json.dumps(steps),
        "now": dialect.adapt(SagaInstance, "created_at", now),
        "deadline_at": dialect.adapt(SagaInstance, "deadline_at", deadline),
    }
    rows = dialect.execute(SQLITE_SQL, params | values)
    dialect.execute(f"{STARTED} {SAGA} WHERE id = %(id)s", params | values)
    saga = SagaFacts(str(params["id"]), definition.name, definition.version, params["status"])
    webhooks = outbox_rows([_started(params)], saga, Notify.of(definition.notify))
    outbox_insert(params["id"], webhooks, now)
    return rows
