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
    ("/api/sagas/{saga_id}/pause/", "post"),
    ("/api/sagas/{saga_id}/resume/", "post"),
    ("/api/sagas/{saga_id}/history/", "get"),
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


def request_examples(operation: dict) -> list:
    return [
        example["value"]
        for example in operation["requestBody"]["content"]["application/json"]["examples"].values()
    ]


def response_examples(operation: dict, code: str) -> list:
    content = operation["responses"][code]["content"]["application/json"]
    return [example["value"] for example in content.get("examples", {}).values()]


def test_resume_documents_its_body_answers_and_examples(schema):
    resume = schema["paths"]["/api/sagas/{saga_id}/resume/"]["post"]

    body = schema["components"]["schemas"]["ResumeRequest"]["properties"]
    assert set(body) == {"from_step", "input_patch", "skip", "reason"}
    assert body["reason"]["maxLength"] == 500
    assert {"202", "400", "401", "403", "404", "409", "413"} <= set(resume["responses"])
    examples = request_examples(resume)
    assert any("input_patch" in e for e in examples)
    assert any("from_step" in e for e in examples)
    assert any("skip" in e for e in examples)
    assert response_examples(resume, "400") and response_examples(resume, "409")
    assert ":<n>" in resume["description"]


@pytest.mark.parametrize("action", ["cancel", "retry", "pause"])
def test_cancel_retry_and_pause_document_an_optional_reason(schema, action):
    operation = schema["paths"][f"/api/sagas/{{saga_id}}/{action}/"]["post"]

    assert operation["requestBody"].get("required") is not True
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/ReasonRequest")
    assert {"202", "400", "404", "409"} <= set(operation["responses"])
    assert response_examples(operation, "409")[0]["code"] == "conflict"


def test_history_documents_its_entries_with_an_example(schema):
    history = schema["paths"]["/api/sagas/{saga_id}/history/"]["get"]

    entry = schema["components"]["schemas"]["HistoryEntry"]["properties"]
    assert set(entry) == {"at", "event", "step", "actor", "key_id", "reason", "details"}
    examples = response_examples(history, "200")
    assert all(len(example) == 1 for example in examples)  # one entry each, as a list
    assert {example[0]["event"] for example in examples} >= {"paused", "resumed"}


def test_paused_on_failure_and_run_are_in_the_schema(schema):
    components = schema["components"]["schemas"]

    assert "paused" in components["SagaStatusEnum"]["enum"]
    assert "paused" in components["ServiceStatus"]["properties"]["sagas"]["properties"]
    assert components["OnFailureEnum"]["enum"] == ["compensate", "pause"]
    assert "on_failure" in components["DefinitionRequest"]["properties"]
    assert "on_failure" in components["StepRequest"]["properties"]
    assert "run" in components["Attempt"]["properties"]
    listing = schema["paths"]["/api/sagas/"]["get"]["parameters"]
    status = next(p for p in listing if p["name"] == "status")
    assert "paused" in status["schema"]["enum"]
