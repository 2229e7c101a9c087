"""API keys (DESIGN §3): roles, 401 vs 403, constant-time comparison, and keys that never
show up in logs, error bodies, the schema or metrics."""

import hmac

import prometheus_client
import pytest
from django.test import Client, override_settings

from sagas.api import auth
from tests.security_helpers import captured_logs, security_settings, unique_ip


def get(path, key=None, **extra):
    headers = {"X-API-Key": key} if key is not None else {}
    return Client(raise_request_exception=False).get(
        path, headers=headers, REMOTE_ADDR=unique_ip(), **extra
    )


def test_roles_and_status_codes():
    with security_settings() as keys:
        missing = get("/api/limited/")
        empty = get("/api/limited/", key="")
        unknown = get("/api/limited/", key=keys.client_key + "x")
        client = get("/api/limited/", key=keys.client_key)
        internal = get("/api/limited/", key=keys.internal_key)
        client_on_internal = get("/api/internal/", key=keys.client_key)
        anonymous_on_internal = get("/api/internal/")
        internal_on_internal = get("/api/internal/", key=keys.internal_key)
    assert missing.status_code == 401 and missing.json()["code"] == "not_authenticated"
    assert missing["WWW-Authenticate"] == "X-API-Key"
    assert empty.status_code == 401
    assert unknown.status_code == 401 and unknown.json()["code"] == "authentication_failed"
    assert client.json()["role"] == "client"
    assert internal.json()["role"] == "internal"
    assert client_on_internal.status_code == 403
    assert client_on_internal.json()["code"] == "permission_denied"
    assert anonymous_on_internal.status_code == 401
    assert internal_on_internal.status_code == 200


def test_every_key_is_compared_in_constant_time(monkeypatch):
    calls, compare = [], hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    with override_settings(SAGA_API_KEY="client-key-1", INTERNAL_API_KEY="internal-key-2"):
        for key, role in [
            ("internal-key-2", "internal"),
            ("client-key-1", "client"),
            ("nope", None),
            ("x" * 5000, None),
        ]:
            calls.clear()
            assert auth.role_for_key(key) == role
            assert calls == [(32, 32), (32, 32)]  # both keys, fixed-length digests


def test_an_unset_key_matches_nothing():
    with override_settings(SAGA_API_KEY="", INTERNAL_API_KEY="internal-key-2"):
        assert auth.role_for_key("") is None


@pytest.mark.parametrize("key", ["ümlaut-key", "\udcff-lone-surrogate"])
def test_odd_keys_are_401_not_500(key):
    with security_settings():
        assert auth.role_for_key(key) is None


def test_keys_never_appear_in_logs_bodies_schema_or_metrics():
    with security_settings(limit=4) as keys, captured_logs() as (stream, records):
        secrets = [keys.client_key, keys.internal_key]
        near_misses = [keys.client_key[:-1] + "X", keys.internal_key + "0"]
        responses = []
        for key in secrets + near_misses + [None]:
            for path in ("/api/limited/", "/api/internal/", "/api/boom/", "/api/db-down/"):
                responses.append(get(path, key=key))
            responses.append(get("/nowhere/", key=key))
        for _ in range(5):  # into the 429s
            responses.append(get("/api/limited/", key=keys.client_key))
        schema = get("/api/schema/", key=keys.client_key)
        docs = get("/api/docs/")
    assert 429 in {r.status_code for r in responses}
    assert {500, 503, 401, 403, 404} <= {r.status_code for r in responses}
    log_text = stream.getvalue() + "\n".join(str(r.__dict__) for r in records)
    metrics = prometheus_client.generate_latest().decode()
    for secret in secrets + near_misses:
        assert secret not in log_text
        assert secret not in metrics
        assert secret not in schema.content.decode()
        assert secret not in docs.content.decode()
        for response in responses:
            assert secret not in response.content.decode()
            assert all(secret not in value for _, value in response.items())
    assert "sagas.api" in log_text  # the errors were logged, just without keys


def test_real_schema_has_no_keys():
    from django.conf import settings

    response = Client().get("/api/schema/", REMOTE_ADDR=unique_ip())
    assert response.status_code == 200
    for secret in (settings.SAGA_API_KEY, settings.INTERNAL_API_KEY, settings.SECRET_KEY):
        assert secret not in response.content.decode()
    assert "X-API-Key" in response.content.decode()  # the scheme is documented, not a value
