"""DEBUG=False with an empty or placeholder secret: Gunicorn, the WSGI import and
`check --deploy` refuse to start and name the variable (DESIGN §6)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "SECRET_KEY": "a-real-secret-key-for-this-test-0123456789",
    "SAGA_API_KEY": "client-key-for-this-test",
    "INTERNAL_API_KEY": "internal-key-for-this-test",
}
WSGI_IMPORT = [sys.executable, "-c", "import saga_orchestrator.wsgi"]
CHECK_DEPLOY = [sys.executable, "manage.py", "check", "--deploy"]
GUNICORN_CHECK = [
    sys.executable, "-m", "gunicorn", "--check-config", "-c", "gunicorn.conf.py",
    "saga_orchestrator.wsgi",
]  # fmt: skip


def run(command: list[str], **secrets: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBUG": "False", "LOG_FILE": "", **GOOD, **secrets}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [WSGI_IMPORT, CHECK_DEPLOY, GUNICORN_CHECK])
def test_placeholder_secret_key_refuses_to_start(command):
    result = run(command, SECRET_KEY="your-super-secret-key-change-in-production")

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGA_API_KEY", "your-saga-api-key"),
        ("INTERNAL_API_KEY", "your-internal-api-key"),
        ("SAGA_API_KEY", ""),
        ("INTERNAL_API_KEY", ""),
        ("SECRET_KEY", ""),
    ],
)
def test_each_missing_or_placeholder_secret_is_named(name, value):
    result = run(WSGI_IMPORT, **{name: value})

    assert result.returncode != 0
    assert name in result.stderr


@pytest.mark.parametrize("command", [WSGI_IMPORT, CHECK_DEPLOY, GUNICORN_CHECK])
def test_real_secrets_start(command):
    result = run(command)

    assert result.returncode == 0, result.stdout + result.stderr


def test_plain_management_commands_run_without_secrets():
    result = run([sys.executable, "manage.py", "check"], SECRET_KEY="", SAGA_API_KEY="")

    assert result.returncode == 0, result.stderr
