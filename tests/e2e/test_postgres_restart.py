"""A PostgreSQL crash and restart under load (DESIGN §5.1 and §5.5), on a throwaway server.

While the database is down the API answers 503 JSON quickly and the worker lives on; when
it is back, every accepted saga finishes, and nothing accepted is lost.
"""

import os
import subprocess
import sys
import time

import pytest
import requests
from django.conf import settings

from tests.e2e.workers import ROOT, WorkerProcess
from tests.gunicorn_server import gunicorn
from tests.participants import ParticipantServer, Reply
from tests.support import wait_until
from tests.throwaway_postgres import ThrowawayPostgres

pytestmark = [pytest.mark.e2e]
SAGAS = 30


@pytest.fixture
def database():
    server = ThrowawayPostgres()
    try:
        server.start()
        server.create_database("saga_restart")
        yield server
    finally:
        server.destroy()


def service_env(database: ThrowawayPostgres) -> dict:
    return {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(database.port),
        "DB_NAME": "saga_restart",
        "DB_CONNECT_TIMEOUT": "2",
        "SAGA_WORKER_POLL_SECONDS": "0.2",
        # Sagas held when the database died wait out their lease: keep it short here.
        "SAGA_LEASE_SECONDS": "3",
    }


def definition(participants: ParticipantServer) -> dict:
    def call(path):
        return {"method": "POST", "url": participants.url(path), "timeout_seconds": 5}

    steps = [
        {
            "name": "one",
            "action": call("/one"),
            "compensation": call("/undo-one"),
            "retry": {"max_attempts": 10, "delay_seconds": 0.2},
        },
        {
            "name": "two",
            "action": call("/two"),
            "compensation": call("/undo-two"),
            "retry": {"max_attempts": 10, "delay_seconds": 0.2},
        },
    ]
    return {"name": "restart", "timeout_seconds": 300, "steps": steps}


def statuses(api: requests.Session, base: str, ids: list[str]) -> list[str]:
    return [api.get(f"{base}/api/sagas/{saga_id}/", timeout=10).json()["status"] for saga_id in ids]


def test_postgres_restart_loses_no_saga_and_the_api_answers_503_meanwhile(database, tmp_path):
    env = service_env(database)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    participants = ParticipantServer()
    participants.script("POST", "/one", Reply(200, {"id": "r-1"}, delay=0.05))
    participants.script("POST", "/two", Reply(200, {"id": "c-1"}, delay=0.05))
    worker = WorkerProcess(tmp_path, concurrency=4, **env)
    api = requests.Session()
    api.headers["X-API-Key"] = settings.INTERNAL_API_KEY
    try:
        with gunicorn(tmp_path, env=env) as base:
            created = api.post(f"{base}/api/saga-definitions/", json=definition(participants))
            assert created.status_code == 201, created.text
            ids = [
                api.post(
                    f"{base}/api/sagas/", json={"definition": "restart", "input": {"n": n}}
                ).json()["id"]
                for n in range(SAGAS)
            ]
            wait_until(lambda: participants.received("POST", "/one"), 20, what="the first call")

            database.stop("immediate")
            began = time.monotonic()
            down = api.get(f"{base}/api/sagas/", timeout=10)
            assert time.monotonic() - began < 5
            assert down.status_code == 503
            assert down.json()["code"] == "service_unavailable"
            assert api.get(f"{base}/health/detailed/", timeout=10).status_code == 503
            time.sleep(1)  # the worker meets the outage
            assert worker.process.poll() is None, worker.log()

            database.start()
            wait_until(
                lambda: set(statuses(api, base, ids)) == {"completed"},
                90,
                0.1,
                "every saga completed",
            )
    finally:
        participants.close()
        worker.close()

    for saga_id in ids:
        for path, step in (("/one", "one"), ("/two", "two")):
            keys = {r.header("Idempotency-Key") for r in participants.received("POST", path)}
            assert f"{saga_id}:{step}:action" in keys
