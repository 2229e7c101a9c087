"""Shared fixtures: API clients per role. Tests run on the real PostgreSQL and Redis
(`make test` points DB_HOST/REDIS_HOST at 127.0.0.1)."""

import pytest
from django.conf import settings
from rest_framework.test import APIClient


def pytest_configure(config):
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        raise pytest.UsageError("The suite needs PostgreSQL: run it with `make test` (DB_HOST).")


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
