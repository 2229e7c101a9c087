"""The TLS variables of the data stores (DB_SSLMODE, DB_SSLROOTCERT, REDIS_SSL,
REDIS_SSL_CA_CERTS) as settings, and the store passwords kept out of log lines."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from saga_orchestrator import logging as log_setup

ROOT = Path(__file__).resolve().parents[2]
SHOW = (
    "from django.conf import settings as s; "
    "print(s.DATABASES['default']['OPTIONS']); "
    "print(s.REDIS_SSL, s.REDIS_SSL_CA_CERTS)"
)


def settings_of(**env: str) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter with these variables (unset when empty)."""
    child = {key: value for key, value in os.environ.items() if not key.startswith("DB_SSL")}
    for key in ("REDIS_SSL", "REDIS_SSL_CA_CERTS"):
        child.pop(key, None)
    child.update(DJANGO_SETTINGS_MODULE="saga_orchestrator.settings", LOG_FILE="", **env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {SHOW}"],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unset_variables_leave_libpq_and_redis_py_defaults():
    shown = settings_of(DB_HOST="127.0.0.1", REDIS_HOST="127.0.0.1")
    assert shown.returncode == 0, shown.stderr
    options, redis_line = shown.stdout.splitlines()
    assert "ssl" not in options  # libpq's own default (prefer) applies
    assert redis_line == "False "


def test_the_variables_reach_the_database_options_and_the_redis_settings(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("not parsed at start-up, only opened\n")
    shown = settings_of(
        DB_HOST="127.0.0.1",
        DB_SSLMODE="verify-full",
        DB_SSLROOTCERT=str(ca),
        REDIS_HOST="127.0.0.1",
        REDIS_SSL="true",
        REDIS_SSL_CA_CERTS=str(ca),
    )
    assert shown.returncode == 0, shown.stderr
    options, redis_line = shown.stdout.splitlines()
    assert f"'sslmode': 'verify-full', 'sslrootcert': '{ca}'" in options
    assert redis_line == f"True {ca}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_SSLMODE": "verify_full"}, "DB_SSLMODE must be one of disable, allow, prefer"),
        ({"DB_SSLROOTCERT": "/nonexistent/ca.crt"}, "DB_SSLROOTCERT: '/nonexistent/ca.crt'"),
        ({"REDIS_SSL": "maybe"}, "REDIS_SSL must be true or false"),
        ({"REDIS_SSL": "true", "REDIS_SSL_CA_CERTS": "/nonexistent"}, "REDIS_SSL_CA_CERTS:"),
        ({"REDIS_SSL_CA_CERTS": "/etc/hostname"}, "REDIS_SSL_CA_CERTS is set but REDIS_SSL"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env, message):
    shown = settings_of(DB_HOST="127.0.0.1", REDIS_HOST="127.0.0.1", **env)
    assert shown.returncode != 0
    assert "ImproperlyConfigured" in shown.stderr
    assert message in shown.stderr


@pytest.mark.parametrize("variable", ["DB_PASSWORD", "REDIS_PASSWORD"])
def test_a_store_password_never_reaches_a_line(variable, monkeypatch):
    password = f"{variable.lower()}-s3cret-value"
    monkeypatch.setenv(variable, password)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(log_setup.SecretFilter())
    logger = logging.Logger("sagas.redis")
    logger.addHandler(handler)
    logger.warning("cannot connect to redis://:%s@127.0.0.1:6379/0", password)
    logger.error(f"connection string host=db password={password}")
    assert password not in stream.getvalue()
    assert stream.getvalue().count(log_setup.REDACTED) == 2
