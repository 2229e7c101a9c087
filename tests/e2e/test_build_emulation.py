"""The commands the image build and docker-compose run, run here without Docker.

collectstatic (image build) and migrate (the one-shot service) must work with no secrets;
the Dockerfile's HEALTHCHECK command must pass against a running Gunicorn and fail
against a stopped one.
"""

import os
import shlex
import subprocess
import sys
import uuid

import psycopg2
import pytest
from django.conf import settings

from tests.docker_files import ROOT, compose, dockerfile_healthcheck, dockerfile_instructions
from tests.gunicorn_process import child_env, gunicorn_start

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]
SECRETS = ("SECRET_KEY", "SAGA_API_KEY", "INTERNAL_API_KEY")


def env_without_secrets(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(DEBUG="False", LOG_FILE="", **overrides)
    return env


def dockerfile_command(marker: str) -> list[str]:
    """The `&&`-separated part of a Dockerfile RUN that contains `marker`."""
    for name, arguments in dockerfile_instructions():
        if name == "RUN":
            for part in arguments.split("&&"):
                if marker in part:
                    return shlex.split(part)
    raise AssertionError(f"no RUN with {marker!r}")


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    if command[0] == "python":
        command = [sys.executable, *command[1:]]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_collectstatic_at_build_needs_no_secrets(tmp_path):
    env = env_without_secrets(STATIC_ROOT=str(tmp_path / "static"))
    env.pop("DB_HOST", None)  # the build has no database either
    env["SQLITE_PATH"] = str(tmp_path / "build.sqlite3")
    result = run(dockerfile_command("collectstatic"), env)
    assert result.returncode == 0, result.stdout + result.stderr
    # Swagger UI and ReDoc assets, served by whitenoise on a network with no CDN.
    sidecar = tmp_path / "static" / "drf_spectacular_sidecar"
    assert (sidecar / "swagger-ui-dist" / "swagger-ui-bundle.js").exists()
    assert (sidecar / "redoc" / "bundles" / "redoc.standalone.js").exists()


@pytest.fixture
def scratch_database():
    name = f"saga_build_{uuid.uuid4().hex[:12]}"
    database = settings.DATABASES["default"]
    admin = psycopg2.connect(
        host=database["HOST"],
        port=database["PORT"],
        user=database["USER"],
        password=database["PASSWORD"],
        dbname="postgres",
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_migrate_service_needs_no_secrets(scratch_database):
    command = compose()["services"]["migrate"]["command"]
    result = run(command, env_without_secrets(DB_NAME=scratch_database))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Applying sagas.0001_initial... OK" in result.stdout


def test_api_refuses_to_start_without_secrets():
    result = run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--check-config",
            "-c",
            "gunicorn.conf.py",
            "saga_orchestrator.wsgi",
        ],
        env_without_secrets(),
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stdout + result.stderr


def test_healthcheck_command_against_gunicorn(tmp_path):
    server = gunicorn_start(tmp_path, workers=1)
    port = server.base_url.rsplit(":", 1)[1]
    command = [
        part.replace("127.0.0.1:8008", f"127.0.0.1:{port}") for part in dockerfile_healthcheck()
    ]
    try:
        healthy = run(command, dict(os.environ))
    finally:
        server.stop()
    assert healthy.returncode == 0, healthy.stderr
    assert run(command, dict(os.environ)).returncode != 0


def test_dbshell_reaches_postgresql():
    """`docker-compose exec saga_orchestrator python manage.py dbshell` (psql in the image)."""
    result = run(["python", "manage.py", "dbshell", "--", "-c", "select 'dbshell-ok'"], child_env())
    assert result.returncode == 0, result.stderr
    assert "dbshell-ok" in result.stdout
