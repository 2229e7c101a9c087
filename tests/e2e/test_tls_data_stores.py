"""Encrypted connections to PostgreSQL and Redis (DB_SSLMODE, DB_SSLROOTCERT, REDIS_SSL,
REDIS_SSL_CA_CERTS), against servers of the test's own that accept TLS only.

With the right CA every connection the service opens is encrypted and verified: the API's,
the health probe's, the worker's and its LISTEN connection, every Redis client (health,
rate limiter, locks). With an unrelated CA each of them refuses.
"""

import os
import subprocess
import sys
import threading

import psycopg2
import pytest
import redis
import requests
from django.conf import settings
from django.db.utils import load_backend

from sagas.engine.wakeup import CHANNEL, WakeupListener, Wakeups
from sagas.redis_client import redis_client_for
from tests.e2e.workers import ROOT, WorkerProcess
from tests.gunicorn_server import gunicorn
from tests.participants import ParticipantServer, Reply
from tests.security_helpers import captured_logs
from tests.support import wait_until
from tests.tls_servers import Certificates, tls_postgres, tls_redis, tls_redis_client

pytestmark = [pytest.mark.e2e]
DATABASE = "saga_tls"
LISTENER = "saga-worker-listener"


@pytest.fixture(scope="module")
def certificates():
    made = Certificates()
    yield made
    made.destroy()


@pytest.fixture(scope="module")
def postgres(certificates):
    with tls_postgres(certificates, DATABASE) as server:
        yield server


@pytest.fixture(scope="module")
def redis_port(certificates):
    with tls_redis(certificates) as port:
        yield port


def admin_query(postgres, sql: str, params=()) -> list[tuple]:
    """A query on the TLS server as the test (psycopg2's default sslmode encrypts)."""
    conn = psycopg2.connect(host="127.0.0.1", port=postgres.port, user="postgres", dbname=DATABASE)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        conn.close()


def listener_connections(postgres) -> list[bool]:
    """Whether each open LISTEN connection of a worker is encrypted (pg_stat_ssl)."""
    rows = admin_query(
        postgres,
        "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
        "WHERE a.application_name = %s",
        [LISTENER],
    )
    return [row[0] for row in rows]


def service_env(postgres, redis_port: int, ca) -> dict:
    return {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(postgres.port),
        "DB_NAME": DATABASE,
        "DB_SSLMODE": "verify-full",
        "DB_SSLROOTCERT": str(ca),
        "DB_CONNECT_TIMEOUT": "3",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_port),
        "REDIS_DB": "0",
        "REDIS_SSL": "true",
        "REDIS_SSL_CA_CERTS": str(ca),
        "SAGA_WORKER_POLL_SECONDS": "30",  # only a NOTIFY wakes the worker in time
    }


def run_manage(env: dict, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def listener_database(postgres, sslrootcert) -> object:
    """A Django connection to the TLS server, verify-full against `sslrootcert`."""
    params = {
        "ENGINE": "saga_orchestrator.postgresql",
        "NAME": DATABASE,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": postgres.port,
        "OPTIONS": {
            "connect_timeout": 3,
            "sslmode": "verify-full",
            "sslrootcert": str(sslrootcert),
        },
    }
    for key, default in (("TIME_ZONE", None), ("CONN_MAX_AGE", 0), ("AUTOCOMMIT", True)):
        params[key] = default
    params.update(CONN_HEALTH_CHECKS=False, ATOMIC_REQUESTS=False, TEST={})
    return load_backend(params["ENGINE"]).DatabaseWrapper(params, alias="tls_listener")


def start_listener(database) -> tuple[Wakeups, threading.Event, WakeupListener]:
    wakeups = Wakeups(poll_seconds=0.2, capacity=4)
    stopping = threading.Event()
    listener = WakeupListener(wakeups, stopping, database=database)
    listener.start()
    return wakeups, stopping, listener


def stop_listener(postgres, stopping: threading.Event, listener: WakeupListener) -> None:
    stopping.set()
    listener.join(timeout=10)
    assert not listener.is_alive()
    # The server drops a closed session shortly after: the next test starts with none.
    wait_until(lambda: listener_connections(postgres) == [], 10, what="the LISTEN closed")


def test_the_listen_connection_verifies_the_server_and_is_encrypted(postgres, certificates):
    wakeups, stopping, listener = start_listener(listener_database(postgres, certificates.ca))
    try:
        wait_until(lambda: listener_connections(postgres) == [True], 10, what="an encrypted LISTEN")
        wait_until(wakeups.wait, 5, what="the wake-up at connect")
        while wakeups.wait():  # drain the connect-time tokens
            pass
        admin_query(postgres, "SELECT pg_notify(%s, '')", [CHANNEL])
        wait_until(wakeups.wait, 5, what="a NOTIFY over the TLS connection")
    finally:
        stop_listener(postgres, stopping, listener)


def test_the_listen_connection_refuses_a_server_its_ca_did_not_sign(postgres, certificates):
    with captured_logs() as (_, records):
        wakeups, stopping, listener = start_listener(
            listener_database(postgres, certificates.wrong_ca)
        )
        try:
            wait_until(
                lambda: any("certificate verify failed" in r.getMessage() for r in records),
                10,
                what="the listener's refusal",
            )
            assert listener_connections(postgres) == []
            assert wakeups.wait() is False  # never woken: it never connected
        finally:
            stop_listener(postgres, stopping, listener)


def test_the_redis_client_verifies_the_server(redis_port, certificates):
    common = {"host": "127.0.0.1", "port": redis_port, "timeout": 2.0, "ssl": True}
    trusted = redis_client_for(**common, ssl_ca_certs=str(certificates.ca))
    trusted.set("saga:tls:probe", "1", px=10_000)
    assert trusted.get("saga:tls:probe") == b"1"
    wrong = redis_client_for(**common, ssl_ca_certs=str(certificates.wrong_ca))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        wrong.ping()
    plain = redis_client_for(host="127.0.0.1", port=redis_port, timeout=2.0)
    with pytest.raises(redis.RedisError):
        plain.ping()  # a plain client cannot talk to a TLS-only port


def test_the_service_runs_a_saga_over_tls_to_both_stores(
    postgres, redis_port, certificates, tmp_path
):
    env = service_env(postgres, redis_port, certificates.ca)
    migrate = run_manage(env, "migrate", "-v", "0")
    assert migrate.returncode == 0, migrate.stderr
    participants = ParticipantServer()
    participants.script("POST", "/pay", Reply(201, {"id": "p-1"}))
    participants.script("POST", "/ship", Reply(201, {"id": "s-1"}))
    worker = WorkerProcess(tmp_path, **env)
    api = requests.Session()
    api.headers["X-API-Key"] = settings.INTERNAL_API_KEY
    try:
        with gunicorn(tmp_path, env=env) as base:
            health = api.get(f"{base}/health/detailed/", timeout=10)
            assert health.status_code == 200, health.text
            checks = health.json()["checks"]
            assert checks["database"]["status"] == "ok"
            assert checks["redis"]["status"] == "ok"
            wait_until(lambda: listener_connections(postgres) == [True], 20, what="the LISTEN")

            created = api.post(f"{base}/api/saga-definitions/", json=definition(participants))
            assert created.status_code == 201, created.text
            started = api.post(f"{base}/api/sagas/", json={"definition": "tls", "input": {}})
            assert started.status_code == 202, started.text
            saga_url = f"{base}/api/sagas/{started.json()['id']}/"
            # The poll interval is 30 s: completing within 15 s needs the NOTIFY.
            wait_until(
                lambda: api.get(saga_url, timeout=10).json()["status"] == "completed",
                15,
                0.1,
                "the saga completed",
            )
            after = api.get(f"{base}/health/detailed/", timeout=10).json()["checks"]
            assert after["workers"]["alive"] >= 1
    finally:
        participants.close()
        worker.close()

    # Every session on the database was encrypted (pg_hba.conf refuses others anyway).
    sessions = admin_query(
        postgres,
        "SELECT DISTINCT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
        "WHERE a.datname = %s",
        [DATABASE],
    )
    assert sessions == [(True,)]
    # The rate limiter counted in the TLS Redis.
    assert tls_redis_client(redis_port, certificates.ca).dbsize() > 0


def test_the_service_refuses_stores_whose_certificate_its_ca_did_not_sign(
    postgres, redis_port, certificates, tmp_path
):
    env = service_env(postgres, redis_port, certificates.wrong_ca)
    with gunicorn(tmp_path, env=env) as base:
        health = requests.get(
            f"{base}/health/detailed/",
            headers={"X-API-Key": settings.INTERNAL_API_KEY},
            timeout=15,
        )
    assert health.status_code == 503
    checks = health.json()["checks"]
    assert checks["database"]["status"] == "down"
    assert checks["redis"]["status"] == "down"
    migrate = run_manage(env, "migrate", "-v", "0")
    assert migrate.returncode != 0
    assert "certificate verify failed" in migrate.stderr


def definition(participants: ParticipantServer) -> dict:
    def call(path):
        return {"method": "POST", "url": participants.url(path), "timeout_seconds": 5}

    steps = [
        {"name": "pay", "action": call("/pay"), "compensation": call("/refund")},
        {"name": "ship", "action": call("/ship"), "compensation": call("/unship")},
    ]
    return {"name": "tls", "timeout_seconds": 60, "steps": steps}
