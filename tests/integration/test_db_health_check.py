"""The API's database health check (saga_orchestrator/postgresql): no `SELECT 1` while the
idle connection is fine, and still a reconnect — not a failed request — when PostgreSQL
ended the connection in between (a restart, pg_terminate_backend)."""

import psycopg2
import pytest
from django.conf import settings
from django.db import close_old_connections, connection

pytestmark = pytest.mark.django_db(transaction=True)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate(pid: int) -> None:
    params = settings.DATABASES["default"]
    other = psycopg2.connect(
        host=params["HOST"], port=params["PORT"], user=params["USER"],
        password=params["PASSWORD"], dbname=connection.settings_dict["NAME"],
    )  # fmt: skip
    try:
        other.autocommit = True
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # waits for it
    finally:
        other.close()


def test_an_idle_healthy_connection_is_usable_without_a_query():
    pid = backend_pid()
    assert connection.is_usable()
    assert backend_pid() == pid  # same connection, kept


def test_a_connection_the_server_ended_is_replaced_before_the_request_uses_it():
    before = backend_pid()
    terminate(before)

    close_old_connections()  # what every request does first (Django's request_started)

    assert backend_pid() != before  # its first query reconnected instead of failing
