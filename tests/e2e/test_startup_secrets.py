"""With DEBUG=False the API refuses to start, and `check --deploy` fails, while a secret is
empty or a placeholder, naming the variable (DESIGN §6); a realistic production
environment passes `check --deploy` with no issue at all."""

import os
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

GOOD = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "SAGA_API_KEY": secrets.token_urlsafe(32),
    "INTERNAL_API_KEY": secrets.token_urlsafe(32),
}
PRODUCTION = {
    **GOOD,
    "DEBUG": "False",
    "ALLOWED_HOSTS": "saga.example.com",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
    "SECURE_SSL_REDIRECT": "True",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "True",
    "SECURE_HSTS_PRELOAD": "True",
    "TRUSTED_PROXIES": "10.0.0.0/8",
}
# Two environments that together make every secret both empty and a placeholder.
BROKEN = [
    {
        "SECRET_KEY": "",
        "SAGA_API_KEY": "your-saga-api-key",
        "INTERNAL_API_KEY": "your-internal-api-key",
    },
    {
        "SECRET_KEY": "your-super-secret-key-change-in-production",
        "SAGA_API_KEY": "",
        "INTERNAL_API_KEY": "",
    },
]
IMPORT_WSGI = [sys.executable, "-c", "import saga_orchestrator.wsgi"]
CHECK_DEPLOY = [sys.executable, "manage.py", "check", "--deploy"]
GUNICORN_CHECK = [
    sys.executable,
    "-m",
    "gunicorn",
    "--check-config",
    "-c",
    "gunicorn.conf.py",
    "saga_orchestrator.wsgi",
]


def run(command: list[str], **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DEBUG": "False", "LOG_FILE": "", **env}
    full_env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


def run_all(jobs):
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda job: run(job[0], **job[1]), jobs))


def expected_messages(env: dict) -> list[str]:
    return [
        f"{name} is empty" if not value else f"{name} is still a placeholder"
        for name, value in env.items()
    ]


def test_refusal_names_each_bad_secret():
    jobs = [(command, env) for env in BROKEN for command in (IMPORT_WSGI, CHECK_DEPLOY)]
    jobs.append((GUNICORN_CHECK, BROKEN[0]))
    results = run_all(jobs)
    for (command, env), result in zip(jobs, results, strict=True):
        output = result.stdout + result.stderr
        assert result.returncode != 0, (command, output)
        for message in expected_messages(env):
            assert message in output, (command, message, output)
        for value in env.values():
            if value:
                assert f"{value!r}" not in output  # names the variable, not its value


def test_dev_keys_are_refused_in_production_and_keys_must_differ():
    dev, same = run_all(
        [
            (IMPORT_WSGI, {**GOOD, "SAGA_API_KEY": "dev-saga-key"}),
            (IMPORT_WSGI, {**GOOD, "INTERNAL_API_KEY": GOOD["SAGA_API_KEY"]}),
        ]
    )
    assert dev.returncode != 0 and "SAGA_API_KEY is still a placeholder" in dev.stderr
    assert same.returncode != 0 and "must differ" in same.stderr


def test_production_settings_pass_check_deploy_cleanly_and_start():
    check, wsgi, gunicorn, debug, static = run_all(
        [
            (CHECK_DEPLOY, PRODUCTION),
            (IMPORT_WSGI, PRODUCTION),
            (GUNICORN_CHECK, PRODUCTION),
            # DEBUG=True uses development keys; build steps need no secrets at all.
            (IMPORT_WSGI, {"DEBUG": "True", "SECRET_KEY": "", "SAGA_API_KEY": ""}),
            (
                [sys.executable, "manage.py", "collectstatic", "--dry-run", "--noinput"],
                {"SECRET_KEY": "", "SAGA_API_KEY": "", "INTERNAL_API_KEY": ""},
            ),
        ]
    )
    assert check.returncode == 0, check.stderr
    assert "System check identified no issues" in check.stdout, check.stdout + check.stderr
    assert "WARNINGS" not in check.stderr and "ERRORS" not in check.stderr
    assert wsgi.returncode == 0, wsgi.stderr
    assert gunicorn.returncode == 0, gunicorn.stdout + gunicorn.stderr
    assert debug.returncode == 0, debug.stderr
    assert static.returncode == 0, static.stderr


def test_bad_trusted_proxies_are_refused_naming_the_variable():
    result = run(IMPORT_WSGI, **GOOD, TRUSTED_PROXIES="10.0.0.1, not-a-network")
    assert result.returncode != 0
    assert "TRUSTED_PROXIES: 'not-a-network' is not an IP address or network" in result.stderr
