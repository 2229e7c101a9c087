"""Roles of DESIGN §3: no key or unknown key → 401, known key without the role → 403."""

import uuid

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

SOME_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
CLIENT_ENDPOINTS = [
    ("get", "/api/saga-definitions/"),
    ("get", "/api/saga-definitions/checkout/"),
    ("get", "/api/sagas/"),
    ("post", "/api/sagas/"),
    ("get", f"/api/sagas/{SOME_ID}/"),
    ("get", f"/api/sagas/{SOME_ID}/logs/"),
    ("post", f"/api/sagas/{SOME_ID}/cancel/"),
]
INTERNAL_ENDPOINTS = [
    ("post", "/api/saga-definitions/"),
    ("post", f"/api/sagas/{SOME_ID}/retry/"),
]
OPEN_ENDPOINTS = [
    "/health/",
    "/health/detailed/",
    "/api/sagas/status/",
    "/api/docs/",
    "/api/redoc/",
    "/api/schema/",
]


def with_key(key: str | None) -> APIClient:
    api = APIClient()
    if key is not None:
        api.credentials(HTTP_X_API_KEY=key)
    return api


@pytest.mark.parametrize(("method", "path"), CLIENT_ENDPOINTS + INTERNAL_ENDPOINTS)
@pytest.mark.parametrize("key", [None, "wrong-key", ""])
def test_missing_or_unknown_key_is_401_json(method, path, key):
    response = getattr(with_key(key), method)(path, {}, format="json")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] in {"not_authenticated", "authentication_failed"}
    assert response["WWW-Authenticate"] == "X-API-Key"


@pytest.mark.parametrize(("method", "path"), INTERNAL_ENDPOINTS)
def test_client_key_on_internal_endpoints_is_403(client_api, method, path):
    response = getattr(client_api, method)(path, {}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize(("method", "path"), CLIENT_ENDPOINTS)
@pytest.mark.parametrize("role", ["client_api", "internal_api"])
def test_both_keys_pass_client_endpoints(request, role, method, path):
    api = request.getfixturevalue(role)

    response = getattr(api, method)(path, {}, format="json")

    assert response.status_code not in (401, 403)


@pytest.mark.parametrize("path", OPEN_ENDPOINTS)
def test_open_endpoints_need_no_key(path):
    assert APIClient().get(path).status_code == 200


@pytest.mark.parametrize("path", OPEN_ENDPOINTS)
def test_open_endpoints_ignore_a_wrong_key(path):
    assert with_key("wrong-key").get(path).status_code == 200


def test_open_pages_reveal_no_secrets_or_hosts(settings):
    for path in ("/health/detailed/", "/api/sagas/status/", "/api/schema/"):
        text = APIClient().get(path).content.decode()
        for secret in (settings.SAGA_API_KEY, settings.INTERNAL_API_KEY, settings.SECRET_KEY):
            assert secret not in text
        assert "127.0.0.1" not in text
