"""The OpenAPI schema: valid, complete, with the X-API-Key scheme and error shapes."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

API_OPERATIONS = {
    ("/api/saga-definitions/", "get"),
    ("/api/saga-definitions/", "post"),
    ("/api/saga-definitions/{name}/", "get"),
    ("/api/sagas/", "get"),
    ("/api/sagas/", "post"),
    ("/api/sagas/{saga_id}/", "get"),
    ("/api/sagas/{saga_id}/logs/", "get"),
    ("/api/sagas/{saga_id}/cancel/", "post"),
    ("/api/sagas/{saga_id}/retry/", "post"),
    ("/api/sagas/status/", "get"),
    ("/api/events/", "get"),
    ("/api/events/{event_id}/redeliver/", "post"),
    ("/health/", "get"),
    ("/health/detailed/", "get"),
}
OPEN = {"/api/sagas/status/", "/health/", "/health/detailed/"}


@pytest.fixture(scope="module")
def schema() -> dict:
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "s.yml"))


def test_every_endpoint_is_documented(schema):
    documented = {(path, method) for path, ops in schema["paths"].items() for method in ops}

    assert API_OPERATIONS <= documented


def test_api_key_scheme_and_which_operations_need_it(schema):
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for path, method in API_OPERATIONS:
        security = schema["paths"][path][method].get("security", [])
        if path in OPEN:
            assert {"ApiKey": []} not in security, path
        else:
            assert {"ApiKey": []} in security, (path, method)


def test_start_documents_idempotency_key_202_and_errors(schema):
    start = schema["paths"]["/api/sagas/"]["post"]

    headers = [p["name"] for p in start["parameters"] if p["in"] == "header"]
    assert headers == ["Idempotency-Key", "traceparent", "tracestate"]
    assert {"200", "202", "400", "401", "409", "413"} <= set(start["responses"])
    error = start["responses"]["409"]["content"]["application/json"]["schema"]["$ref"]
    assert error.endswith("/Error")
    assert start["requestBody"]["content"]["application/json"]["examples"]


def test_definition_create_example_is_the_design_checkout(schema):
    create = schema["paths"]["/api/saga-definitions/"]["post"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]

    example = next(iter(examples.values()))["value"]
    assert example["name"] == "order_checkout"
    assert example["steps"][0]["retry"]["max_attempts"] == 3


def test_lists_are_paginated_and_filters_documented(schema):
    listing = schema["paths"]["/api/sagas/"]["get"]

    names = {p["name"] for p in listing["parameters"]}
    assert {"status", "definition", "created_after", "created_before", "page"} <= names
    ref = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/PaginatedSagaList")
    logs = schema["paths"]["/api/sagas/{saga_id}/logs/"]["get"]["responses"]["200"]
    assert logs["content"]["application/json"]["schema"]["type"] == "array"


@pytest.mark.django_db
def test_the_documented_example_definition_is_accepted(schema, internal_api):
    create = schema["paths"]["/api/saga-definitions/"]["post"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]
    body = next(iter(examples.values()))["value"]

    assert internal_api.post("/api/saga-definitions/", body, format="json").status_code == 201
