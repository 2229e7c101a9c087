"""gunicorn.conf.py: the guide's defaults, GUNICORN_* overrides, clear errors."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.gunicorn_process import ROOT

GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
APP = "saga_orchestrator.wsgi"
GUNICORN_VARIABLES = (
    "GUNICORN_BIND",
    "GUNICORN_WORKERS",
    "GUNICORN_WORKER_CLASS",
    "GUNICORN_TIMEOUT",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "GUNICORN_KEEPALIVE",
    "GUNICORN_MAX_REQUESTS",
    "GUNICORN_MAX_REQUESTS_JITTER",
)


def run_gunicorn(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in GUNICORN_VARIABLES}
    environment.update(env)
    return subprocess.run(
        [*GUNICORN, *args, APP],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def printed_config(**env: str) -> dict[str, str]:
    result = run_gunicorn("--print-config", **env)
    assert result.returncode == 0, result.stderr
    return dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, flags=re.MULTILINE))


def test_defaults_are_the_guides():
    config = printed_config()
    assert config["bind"] == "['0.0.0.0:8008']"
    assert config["workers"] == "4"
    assert config["worker_class"] == "sync"
    assert config["timeout"] == "120"
    assert config["keepalive"] == "2"
    assert config["max_requests"] == "1000"
    assert config["max_requests_jitter"] == "100"
    assert config["graceful_timeout"] == "30"
    assert config["control_socket_disable"] == "True"
    assert config["loglevel"] == "info"


def test_every_value_is_overridable_by_env():
    config = printed_config(
        GUNICORN_BIND="127.0.0.1:9001",
        GUNICORN_WORKERS="9",
        GUNICORN_WORKER_CLASS="gthread",
        GUNICORN_TIMEOUT="60",
        GUNICORN_GRACEFUL_TIMEOUT="20",
        GUNICORN_KEEPALIVE="5",
        GUNICORN_MAX_REQUESTS="500",
        GUNICORN_MAX_REQUESTS_JITTER="50",
        LOG_LEVEL="warning",
    )
    assert config["bind"] == "['127.0.0.1:9001']"
    assert config["workers"] == "9"
    assert config["worker_class"] == "gthread"
    assert config["timeout"] == "60"
    assert config["graceful_timeout"] == "20"
    assert config["keepalive"] == "5"
    assert config["max_requests"] == "500"
    assert config["max_requests_jitter"] == "50"
    assert config["loglevel"] == "warning"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GUNICORN_WORKERS", "four", "GUNICORN_WORKERS must be an integer, got 'four'"),
        ("GUNICORN_WORKERS", "0", "GUNICORN_WORKERS must be at least 1, got 0"),
        ("GUNICORN_TIMEOUT", "2m", "GUNICORN_TIMEOUT must be an integer, got '2m'"),
        ("GUNICORN_WORKER_CLASS", "gevent", "GUNICORN_WORKER_CLASS must be one of sync, gthread"),
        ("GUNICORN_MAX_REQUESTS_JITTER", "-1", "GUNICORN_MAX_REQUESTS_JITTER must be at least 0"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of DEBUG, INFO"),
    ],
)
def test_an_invalid_value_names_the_variable(variable, value, message):
    result = run_gunicorn("--check-config", **{variable: value})
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_check_config_loads_the_config_and_the_app():
    result = run_gunicorn("--check-config")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_config_fails_without_secrets():
    """The app import refuses placeholder keys with DEBUG=False (DESIGN §6)."""
    result = run_gunicorn("--check-config", SAGA_API_KEY="your-saga-api-key")
    assert result.returncode != 0
    assert "SAGA_API_KEY" in result.stdout + result.stderr


def run_local_module():
    spec = importlib.util.spec_from_file_location("run_local", ROOT / "scripts" / "run_local.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run_config(**env: str) -> dict[str, str]:
    """Gunicorn's effective values under the environment `make run` gives it."""
    environment = run_local_module().embedded_environment(env)
    return printed_config(**{k: v for k, v in environment.items() if k.startswith("GUNICORN_")})


def test_make_run_listens_on_loopback_only_by_default():
    """Its development keys are public: other machines must not reach them by default."""
    assert make_run_config()["bind"] == "['127.0.0.1:8008']"


def test_make_run_listens_where_gunicorn_bind_says():
    assert make_run_config(GUNICORN_BIND="0.0.0.0:9002")["bind"] == "['0.0.0.0:9002']"
    assert make_run_config(GUNICORN_BIND=" ")["bind"] == "['127.0.0.1:8008']"
