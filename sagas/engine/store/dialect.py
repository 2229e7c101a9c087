"""The seam between the store and its two databases: one SQL text per statement, rendered
for PostgreSQL or SQLite, run on Django's connection, values adapted and read back by the
models' own fields (so a row means the same on both).

What differs, and nothing else:
    clock       PostgreSQL: the database's (statement_timestamp()), so a worker host whose
                clock runs ahead cannot take over a live lease; SQLite: the process's (the
                file belongs to the one host that runs the API and the worker).
    casts       PostgreSQL types parameters of a prepared statement from `::type` casts.
    SKIP LOCKED PostgreSQL only (the claim picks in its UPDATE); SQLite has one writer at
                a time, and the claim reads a candidate first (claim.py).
    prepare     PostgreSQL: each statement is a server-side prepared statement of its
                connection (planning was about 40 % of a transition's server CPU).
    CTEs        PostgreSQL writes a transition as one data-modifying statement; SQLite runs
                the same pieces as statements of one short transaction (transition.py).

Table names come from the models; every value is a query parameter (hence the S608
waivers: no input reaches the SQL text).
"""

# ruff: noqa: S608

import functools
import hashlib
import re
import weakref
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Model

_PARAMETER = re.compile(r"%\((\w+)\)s")
# Per live psycopg2 connection, the statements prepared on it (a reconnect starts afresh;
# PREPARE outlives a rolled-back transaction, so the record stays true).
_prepared: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def now_sql() -> str:
    """ "Now" in a statement: the database's clock on PostgreSQL, `%(now)s` on SQLite
    (clock_params supplies it)."""
    return "statement_timestamp()" if is_postgresql() else "%(now)s"


def later_sql(seconds_param: str) -> str:
    """`seconds_param` seconds from now in a statement (NULL when the parameter is NULL).
    On SQLite the parameter `<seconds_param>_at` holds the moment (clock_params)."""
    if is_postgresql():
        return f"statement_timestamp() + make_interval(secs => %({seconds_param})s::float8)"
    return f"%({seconds_param}_at)s"


def clock_params(now: datetime, **seconds: float | None) -> dict:
    """The clock parameters of a statement: on PostgreSQL the durations (the database adds
    them to its own clock), on SQLite `now` and each moment by the process's clock."""
    if is_postgresql():
        return dict(seconds)
    moments = {"now": now}
    for name, value in seconds.items():
        moments[f"{name}_at"] = None if value is None else now + timedelta(seconds=value)
    return {name: connection.ops.adapt_datetimefield_value(m) for name, m in moments.items()}


def cast(param: str, sql_type: str) -> str:
    """`%(param)s`, typed for a prepared statement on PostgreSQL."""
    return f"%({param})s::{sql_type}" if is_postgresql() else f"%({param})s"


def skip_locked() -> str:
    return "FOR UPDATE SKIP LOCKED" if is_postgresql() else ""


def adapt(model: type[Model], column: str, value):
    """`value` as the database stores `model`'s `column` (a UUID as hex text and a time as
    naive UTC text on SQLite; JSON as text on both)."""
    return model._meta.get_field(column).get_db_prep_save(value, connection)


def execute(sql: str, params: dict):
    """Run `sql` (%(key)s parameters, already adapted); its rows."""
    with connection.cursor() as cursor:
        if is_postgresql():
            _prepared_execute(cursor, sql, params)
        else:
            cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def row_values(model: type[Model], columns: tuple[str, ...], row) -> dict:
    """A returned row as Python values, converted as the ORM converts them on read."""
    converters = _converters(connection.vendor, model, columns)
    values = {}
    for column, value, (expression, functions) in zip(columns, row, converters, strict=True):
        for function in functions:
            value = function(value, expression, connection)
        values[column] = value
    return values


@functools.cache
def _converters(vendor: str, model: type[Model], columns: tuple[str, ...]) -> list:
    found = []
    for column in columns:
        expression = model._meta.get_field(column).get_col(model._meta.db_table)
        functions = connection.ops.get_db_converters(expression)
        functions += expression.get_db_converters(connection)
        found.append((expression, functions))
    return found


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


def _prepared_execute(cursor, sql: str, params: dict) -> None:
    name, prepare, execute_sql = _prepared_form(sql)
    connection.ensure_connection()
    names = _prepared.setdefault(connection.connection, set())
    if name not in names:
        cursor.execute(prepare)
        names.add(name)
    cursor.execute(execute_sql, params)
