"""Shared fixtures: API clients per role.

`make test` runs the suite twice. First on the real PostgreSQL and Redis (DB_HOST and
REDIS_HOST at 127.0.0.1): every test. Then on the embedded default `make run` uses (no
DB_HOST: SQLite, a test database file per process; no REDIS_HOST: no Redis lock): only the
tests marked `sqlite`, which must hold on both databases. Unmarked tests are deselected on
SQLite, since they rely on PostgreSQL or Redis, and so are tests of a `sqlite` module marked
`not_on_sqlite("why")`: what the embedded default cannot do (LISTEN/NOTIFY, Redis locks, the
database's clock; docs/development.md lists them). The reason is required: it names the
equivalent that runs on both, or says why there is none.
"""

import shutil
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.participants import ParticipantServer


def on_sqlite() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")


def pytest_configure(config):
    if on_sqlite():
        # A file, as `make run` uses, not Django's in-memory test database: engine tests
        # run workers in threads, and threads sharing an in-memory database lock each
        # other out of its tables ("database table is locked").
        config.sqlite_dir = tempfile.mkdtemp(prefix="saga-tests-")
        test = settings.DATABASES["default"].setdefault("TEST", {})
        test["NAME"] = str(Path(config.sqlite_dir) / "test.sqlite3")


def pytest_unconfigure(config):
    if getattr(config, "sqlite_dir", None):
        shutil.rmtree(config.sqlite_dir, ignore_errors=True)


def pytest_report_header(config):
    if on_sqlite():
        return "database: SQLite (embedded default); only tests marked `sqlite` run"
    return "database: PostgreSQL"


def runs_on_sqlite(item) -> bool:
    return bool(item.get_closest_marker("sqlite")) and not item.get_closest_marker("not_on_sqlite")


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("not_on_sqlite")
        if marker and not (marker.args and str(marker.args[0]).strip()):
            raise pytest.UsageError(f"{item.nodeid}: not_on_sqlite needs a one-line reason")
    if not on_sqlite():
        return
    kept = [item for item in items if runs_on_sqlite(item)]
    deselected = [item for item in items if not runs_on_sqlite(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture
def participants() -> ParticipantServer:
    """A scripted participant server on loopback (tests/participants.py)."""
    server = ParticipantServer()
    yield server
    server.close()


@pytest.fixture
def receiver() -> ParticipantServer:
    """A second scripted server: the receiver of webhooks (tests/webhooks.py)."""
    server = ParticipantServer()
    yield server
    server.close()


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def client_api() -> APIClient:
    """The client role (SAGA_API_KEY)."""
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=settings.SAGA_API_KEY)
    return api


@pytest.fixture
def internal_api() -> APIClient:
    """The internal role (INTERNAL_API_KEY)."""
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=settings.INTERNAL_API_KEY)
    return api
