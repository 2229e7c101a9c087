"""Bad input never yields a 500 or HTML: always a JSON 4xx."""

import uuid

import pytest

from tests.api_builders import nested, post_definition

pytestmark = pytest.mark.django_db

RAW_BODIES = {
    "malformed": b'{"definition": ',
    "trailing garbage": b'{"definition": "checkout"} x',
    "NaN": b'{"definition": "checkout", "input": {"a": NaN}}',
    "Infinity": b'{"definition": "checkout", "input": {"a": Infinity}}',
    "huge exponent": b'{"definition": "checkout", "input": {"a": 1e400}}',
    "huge integer": b'{"definition": "checkout", "input": {"a": ' + b"9" * 5000 + b"}}",
    "deep nesting": b"[" * 100000,
    "deep object": b'{"input": ' + b'{"a": ' * 50 + b"1" + b"}" * 51,
    "not utf-8": b'{"definition": "\xff\xfe"}',
    "lone surrogate": b'{"definition": "checkout", "input": {"a": "\\ud800"}}',
    "NUL in key": b'{"definition": "checkout", "input": {"a\\u0000": 1}}',
    "array": b'[{"definition": "checkout"}]',
    "string": b'"checkout"',
    "null": b"null",
    "number": b"42",
}


@pytest.fixture
def checkout(internal_api):
    post_definition(internal_api)


def assert_json_4xx(response, expected=None):
    assert 400 <= response.status_code < 500, response.content[:300]
    if expected:
        assert response.status_code == expected
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert {"code", "detail", "request_id"} <= set(body)


@pytest.mark.parametrize("name", RAW_BODIES)
@pytest.mark.parametrize("path", ["/api/sagas/", "/api/saga-definitions/"])
def test_bad_json_bodies_are_400(checkout, internal_api, name, path):
    response = internal_api.generic("POST", path, RAW_BODIES[name], content_type="application/json")

    assert_json_4xx(response, 400)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
)
def test_wrong_content_type_is_415(checkout, client_api, content_type):
    response = client_api.generic(
        "POST", "/api/sagas/", b'{"definition": "checkout"}', content_type=content_type
    )

    assert_json_4xx(response, 415)


def test_unsupported_charset_is_400(checkout, client_api):
    response = client_api.generic(
        "POST", "/api/sagas/", b"{}", content_type="application/json; charset=bz2_codec"
    )

    assert_json_4xx(response, 400)


def test_empty_body_is_a_validation_error(checkout, client_api):
    response = client_api.generic("POST", "/api/sagas/", b"", content_type="application/json")

    assert_json_4xx(response, 400)
    assert "definition" in response.json()["errors"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/sagas/not-a-uuid/",
        "/api/sagas/1/logs/",
        "/api/sagas/00000000-0000-4000-8000-00000000000x/",
        "/api/sagas/%00/",
        "/api/saga-definitions/%00/",
        "/api/saga-definitions/" + "a" * 300 + "/",
        "/api/nothing-here/",
        "/nothing/",
        "/api/sagas",  # no trailing slash: no redirect to an HTML page
    ],
)
def test_unknown_paths_and_ids_are_json_404(client_api, path):
    assert_json_4xx(client_api.get(path), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/sagas/"),
        ("delete", "/api/saga-definitions/"),
        ("get", "/api/sagas/{id}/cancel/"),
        ("post", "/health/"),
        ("patch", "/api/sagas/status/"),
    ],
)
def test_wrong_method_is_json_405(checkout, internal_api, method, path):
    path = path.replace("{id}", str(uuid.uuid4()))

    assert_json_4xx(getattr(internal_api, method)(path), 405)


@pytest.mark.parametrize(
    "query",
    ["?page=abc", "?page=999", "?page_size=-1&page=x", "?created_after=%00", "?definition=%00"],
)
def test_bad_query_values_are_json_4xx(client_api, query):
    assert_json_4xx(client_api.get("/api/sagas/" + query))


def test_unknown_query_params_and_huge_page_size_are_fine(client_api):
    response = client_api.get("/api/sagas/?page_size=100000&foo=bar&status[]=x")

    assert response.status_code == 200


def test_wrong_types_in_start_body(checkout, client_api):
    for body in (
        {"definition": ["checkout"]},
        {"definition": {"name": "checkout"}},
        {"definition": "checkout", "input": [1, 2]},
        {"definition": "checkout", "version": [1]},
        {"definition": "checkout", "input": {"a": nested(25)}},
    ):
        assert_json_4xx(client_api.post("/api/sagas/", body, format="json"), 400)


def test_wrong_types_in_definition_body(internal_api):
    for body in (
        {"name": "x", "steps": "all of them"},
        {"name": "x", "steps": [None]},
        {"name": "x", "steps": [["a"]]},
        {"name": "x", "steps": [{"name": "a", "action": "GET http://x"}]},
        {"name": "x", "steps": [{"name": "a", "action": {"method": 1, "url": 2}}]},
        {"name": "x", "steps": [{"name": "a", "action": {"method": "GET", "url": "http://x",
                                                          "headers": None}}]},
    ):  # fmt: skip
        assert_json_4xx(post_definition(internal_api, body), 400)


def test_idempotency_key_with_control_characters_is_400(checkout, client_api):
    response = client_api.post(
        "/api/sagas/", {"definition": "checkout"}, format="json", HTTP_IDEMPOTENCY_KEY="a\x01b"
    )

    assert_json_4xx(response, 400)


HUGE_NUMBERS = [2**31, 2**63, 10**30]


@pytest.mark.parametrize("version", HUGE_NUMBERS)
def test_a_start_with_a_version_out_of_range_is_an_unknown_version(checkout, client_api, version):
    response = client_api.post(
        "/api/sagas/", {"definition": "checkout", "version": version}, format="json"
    )

    assert_json_4xx(response, 400)
    assert "has no version" in response.json()["errors"]["version"][0]


def test_an_unknown_definition_with_a_huge_version_is_an_unknown_definition(client_api):
    response = client_api.post(
        "/api/sagas/", {"definition": "nothing", "version": 10**30}, format="json"
    )

    assert_json_4xx(response, 400)
    assert "Unknown saga definition" in response.json()["errors"]["definition"][0]


@pytest.mark.parametrize("version", HUGE_NUMBERS)
def test_a_definition_version_out_of_range_is_404(checkout, client_api, version):
    assert_json_4xx(client_api.get(f"/api/saga-definitions/checkout/?version={version}"), 404)


@pytest.mark.parametrize("path", ["/api/sagas/", "/api/saga-definitions/"])
@pytest.mark.parametrize(
    "query",
    [f"page={n}" for n in HUGE_NUMBERS]
    + [f"page_size={n}" for n in HUGE_NUMBERS]
    + [f"page=-{10**30}", f"page={'9' * 5000}", f"page_size={'9' * 5000}", "page=1e30"],
)
def test_pages_out_of_range_are_never_a_5xx(checkout, client_api, path, query):
    response = client_api.get(f"{path}?{query}")

    assert response.status_code in (200, 400, 404), response.content[:300]
    assert response["Content-Type"] == "application/json"
