"""PostgreSQL statements of the hot path: a claim and a transition are one statement each.

Same meaning as the ORM code in claim.py and record.py (which SQLite uses), in one round
trip instead of five: a data-modifying CTE is atomic on its own, so no BEGIN/COMMIT pair
and no per-statement ORM compilation. Each statement is a server-side prepared statement
of its connection (PREPARE once, then EXECUTE): PostgreSQL parses and plans it once per
connection instead of on every call (planning was about 40 % of a transition's server CPU).
Table names come from the models; every value is a query parameter (hence the S608
waivers: no input reaches the SQL text).
"""

# ruff: noqa: S608

import functools
import hashlib
import json
import re
import uuid
import weakref

from django.db import connection

from sagas.engine.wakeup import CHANNEL
from sagas.models import ACTIVE_STATUSES, SagaAttempt, SagaDefinition, SagaInstance

SAGA = SagaInstance._meta.db_table
DEFINITION = SagaDefinition._meta.db_table
ATTEMPT = SagaAttempt._meta.db_table
ACTIVE = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
CLAIMED_COLUMNS = (
    "id",
    "status",
    "phase",
    "current_step",
    "steps",
    "error",
    "cause",
    "cancel_requested",
    "deadline_at",
    "started_at",
    "finished_at",
    "input",
    "definition_id",
    "definition_name",
    "created_at",
    "request_id",
)
JSON_COLUMNS = ("steps", "error", "cause", "input")

# Lease times are the database's clock, never a worker's (a host whose clock runs ahead
# would otherwise take over live leases): statement_timestamp() is fresh for each
# statement even inside a transaction (unlike now()) and stable within it (unlike
# clock_timestamp(), which would keep the partial index on next_attempt_at from serving
# the due check).
DB_NOW = "statement_timestamp()"
LEASE_EXPIRY = f"{DB_NOW} + make_interval(secs => %(lease_seconds)s::float8)"

CLAIM_SQL = f"""
UPDATE {SAGA} SET lease_owner = %(owner)s, lease_token = %(token)s,
    lease_expires_at = {LEASE_EXPIRY}, next_attempt_at = {LEASE_EXPIRY}
WHERE id = (
    SELECT id FROM {SAGA}
    WHERE status IN ({ACTIVE}) AND next_attempt_at <= {DB_NOW}
      AND (lease_expires_at IS NULL OR lease_expires_at <= {DB_NOW})
    ORDER BY next_attempt_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING {", ".join(CLAIMED_COLUMNS)}
"""


def claim_row(*, owner: str, token: uuid.UUID, lease_seconds: float) -> dict | None:
    """Lease the most overdue saga (SELECT … FOR UPDATE SKIP LOCKED) for `lease_seconds`
    of the database's clock; its row, or None."""
    params = {"owner": owner, "token": token, "lease_seconds": lease_seconds}
    with connection.cursor() as cursor:
        prepared_execute(cursor, CLAIM_SQL, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = dict(zip(CLAIMED_COLUMNS, row, strict=True))
    for column in JSON_COLUMNS:
        if isinstance(values[column], str):  # Django reads jsonb as text
            values[column] = json.loads(values[column])
    return values


SAGA_SET = (
    "status = %(status)s, phase = %(phase)s, current_step = %(current_step)s,"
    " steps = %(steps)s::jsonb, error = %(error)s::jsonb, cause = %(cause)s::jsonb,"
    " started_at = %(started_at)s,"
    " finished_at = %(finished_at)s, updated_at = %(updated_at)s,"
    " lease_token = %(lease_token)s, lease_owner = %(lease_owner)s,"
    # Held (lease_seconds set), the expiry by the database's clock, which is also when
    # the saga is due again; released (NULL), no expiry and the state's own due time.
    f" lease_expires_at = {LEASE_EXPIRY},"
    f" next_attempt_at = coalesce({LEASE_EXPIRY}, %(next_attempt_at)s)"
)
CLOSE_SQL = (
    f"closed AS (UPDATE {ATTEMPT} SET status_code = %(c_status_code)s,"
    " outcome = %(c_outcome)s, error = %(c_error)s, duration_ms = %(c_duration_ms)s"
    " WHERE saga_id IN (SELECT id FROM saga) AND step_index = %(c_step_index)s"
    " AND phase = %(c_phase)s AND attempt = %(c_attempt)s AND outcome IS NULL)"
)
OPEN_SQL = (
    f"opened AS (INSERT INTO {ATTEMPT}"
    " (saga_id, step, step_index, phase, attempt, method, url, started_at)"
    " SELECT id, %(o_step)s, %(o_step_index)s::integer, %(o_phase)s, %(o_attempt)s::integer,"
    " %(o_method)s, %(o_url)s, %(o_started_at)s::timestamptz FROM saga)"
)


def transition_write(
    *, saga_id, token, fields: dict, watch_cancel: bool, closed: dict | None, opened: dict | None
) -> int:
    """The fenced saga UPDATE plus the attempt rows, as one statement; rows written (0/1)."""
    params = {key: _json(key, value) for key, value in fields.items()}
    params.update(id=saga_id, token=token)
    guard = " AND cancel_requested = false" if watch_cancel else ""
    parts = [
        f"saga AS (UPDATE {SAGA} SET {SAGA_SET}"
        f" WHERE id = %(id)s AND lease_token = %(token)s{guard} RETURNING id)"
    ]
    if closed is not None:
        parts.append(CLOSE_SQL)
        params.update({f"c_{key}": value for key, value in closed.items()})
    if opened is not None:
        parts.append(OPEN_SQL)
        params.update({f"o_{key}": value for key, value in opened.items()})
    sql = "WITH " + ", ".join(parts) + " SELECT count(*) FROM saga"
    with connection.cursor() as cursor:
        prepared_execute(cursor, sql, params)
        return cursor.fetchone()[0]


def _json(key: str, value):
    if key in ("steps", "error", "cause") and value is not None:
        return json.dumps(value)
    return value


# The start of a saga (POST /api/sagas/) --------------------------------------------------

SAGA_COLUMNS = tuple(field.attname for field in SagaInstance._meta.concrete_fields)
START_SQL = f"""
WITH definition AS (
    SELECT id, name, version, timeout_seconds, steps FROM {DEFINITION}
    WHERE name = %(name)s AND (%(version)s::integer IS NULL OR version = %(version)s::integer)
    ORDER BY version DESC
    LIMIT 1
), saga AS (
    INSERT INTO {SAGA} (id, definition_id, definition_name, definition_version, status, input,
        steps, current_step, phase, cancel_requested, next_attempt_at, lease_owner,
        idempotency_key, request_fingerprint, request_id, created_at, deadline_at, updated_at)
    SELECT %(id)s::uuid, id, name, version, %(status)s, %(input)s::jsonb,
        (SELECT coalesce(jsonb_agg(
                    jsonb_set(%(step)s::jsonb, '{{name}}', step -> 'name') ORDER BY n),
                '[]'::jsonb)
            FROM jsonb_array_elements(definition.steps) WITH ORDINALITY AS each(step, n)),
        0, %(phase)s, false, %(now)s::timestamptz, '',
        %(key)s, %(fingerprint)s, %(request_id)s, %(now)s::timestamptz,
        %(now)s::timestamptz + make_interval(secs => timeout_seconds), %(now)s::timestamptz
    FROM definition
    RETURNING {", ".join(SAGA_COLUMNS)}
)
SELECT saga.*, pg_notify('{CHANNEL}', '') FROM saga
"""
SAGA_JSON_COLUMNS = ("input", "steps", "error", "cause")


def saga_insert(*, params: dict) -> SagaInstance | None:
    """Insert a new saga of the named definition (its latest version unless `version`),
    with its steps built from the definition's and a NOTIFY to the workers, in one
    statement; None when there is no such definition or version.

    `params`: name, version, id, status, input (JSON text), step (the initial step as JSON
    text; its name is filled in per step), phase, now, key, fingerprint, request_id. The
    NOTIFY is delivered when the statement's transaction commits, like wake_workers().
    """
    with connection.cursor() as cursor:
        prepared_execute(cursor, START_SQL, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = dict(zip(SAGA_COLUMNS, row[: len(SAGA_COLUMNS)], strict=True))
    for column in SAGA_JSON_COLUMNS:
        if isinstance(values[column], str):  # Django reads jsonb as text
            values[column] = json.loads(values[column])
    return SagaInstance.from_db(connection.alias, SAGA_COLUMNS, list(values.values()))


# Prepared statements ---------------------------------------------------------------------

_PARAMETER = re.compile(r"%\((\w+)\)s")
# Per live psycopg2 connection, the statements prepared on it (a reconnect starts afresh;
# PREPARE outlives a rolled-back transaction, so the record stays true).
_prepared: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()


@functools.cache
def _prepared_form(sql: str) -> tuple[str, str, str]:
    """(name, PREPARE text with $n parameters, EXECUTE text with %(key)s parameters)."""
    order: list[str] = []

    def positional(match: re.Match) -> str:
        if match[1] not in order:
            order.append(match[1])
        return f"${order.index(match[1]) + 1}"

    body = _PARAMETER.sub(positional, sql)
    name = "saga_" + hashlib.sha1(sql.encode()).hexdigest()[:16]  # noqa: S324 (a name)
    arguments = ", ".join(f"%({key})s" for key in order)
    return name, f"PREPARE {name} AS {body}", f"EXECUTE {name}({arguments})"


def prepared_execute(cursor, sql: str, params: dict) -> None:
    """Run `sql` (%(key)s parameters) as a prepared statement of this connection."""
    name, prepare, execute = _prepared_form(sql)
    connection.ensure_connection()
    names = _prepared.setdefault(connection.connection, set())
    if name not in names:
        cursor.execute(prepare)
        names.add(name)
    cursor.execute(execute, params)
