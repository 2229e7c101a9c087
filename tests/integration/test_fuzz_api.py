"""Property-based requests generated from our own OpenAPI schema (schemathesis), with each
role's key: whatever the body, query or path, the API answers JSON, never a 5xx, and every
answer conforms to the schema (documented status, content type, headers and body)."""

import pytest
import schemathesis
from django.conf import settings
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_builders import definition, post_definition

# Successful answers of these are not JSON (Prometheus text); their errors still are.
TEXT_ENDPOINTS = {"/metrics"}
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
schema.config.generation.update(
    modes=["positive", "negative"], max_examples=10, deterministic=True, database="none"
)


@pytest.fixture
def seeded(internal_api):
    """A definition to find, and the app called like Django's test client calls it: without
    closing the test's database connection at the end of each request."""
    post_definition(internal_api, definition("order_checkout"))
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@hypothesis_settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.django_db
@pytest.mark.parametrize("role", ["client", "internal"])
def test_generated_requests_never_fail_the_server(case, seeded, role):
    key = settings.SAGA_API_KEY if role == "client" else settings.INTERNAL_API_KEY
    headers = {"X-API-Key": key}

    response = case.call(headers=headers)
    case.validate_response(response, checks=CONFORMANCE, headers=headers)

    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type")
    assert content_type, (case.method, case.path, response.status_code, response.headers)
    if response.status_code >= 400 or case.path not in TEXT_ENDPOINTS:
        assert content_type[0].startswith("application/json"), (case.method, case.path)
