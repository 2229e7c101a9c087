"""Errors are safe (DESIGN §3): JSON only, no stack traces, SQL, paths or settings in any
response with DEBUG=False, and every 5xx logged with the request id the response carries."""

import logging

import pytest
from django.conf import settings
from django.test import Client

from tests.security_helpers import captured_logs, security_settings, unique_ip

LEAKS = (
    "Traceback",
    'File "',
    "/srv/app",
    "secret_module",
    "SELECT",
    "auth_user",
    "10.9.8.7",
    "site-packages",
    ".py",
)


def client_for(keys) -> Client:
    return Client(
        raise_request_exception=False,
        headers={"X-API-Key": keys.client_key},
        REMOTE_ADDR=unique_ip(),
    )


def assert_safe(response, status: int, code: str):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    text = response.content.decode()
    for leak in LEAKS + (settings.SECRET_KEY, settings.SAGA_API_KEY, settings.INTERNAL_API_KEY):
        assert leak not in text, leak
    body = response.json()
    assert body["code"] == code
    assert body["request_id"] == response["X-Request-ID"]
    return body


def server_errors_logged(records, request_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in records
        if r.levelno >= logging.ERROR and getattr(r, "request_id", None) == request_id
    ]


def test_debug_is_off_in_the_suite():
    assert settings.DEBUG is False


@pytest.mark.parametrize("path", ["/api/boom/", "/plain/boom/"])
def test_unhandled_exception_is_a_json_500_logged_with_its_request_id(path):
    with security_settings() as keys, captured_logs() as (stream, records):
        response = client_for(keys).get(path)
    body = assert_safe(response, 500, "internal_error")
    assert body["detail"] == "Internal server error."
    logged = server_errors_logged(records, response["X-Request-ID"])
    assert logged and any(r.exc_info for r in logged)
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert all(r.request_id == response["X-Request-ID"] for r in errors)  # django.request too
    assert response["X-Request-ID"] in stream.getvalue()


@pytest.mark.parametrize("path", ["/api/db-down/", "/plain/db-down/"])
def test_database_errors_are_a_json_503(path):
    with security_settings() as keys, captured_logs() as (_, records):
        response = client_for(keys).get(path)
    assert_safe(response, 503, "service_unavailable")
    assert server_errors_logged(records, response["X-Request-ID"])


def test_client_supplied_request_id_is_echoed_and_logged():
    with security_settings() as keys, captured_logs() as (_, records):
        response = client_for(keys).get("/api/boom/", headers={"X-Request-ID": "trace-42"})
    assert response["X-Request-ID"] == "trace-42"
    assert response.json()["request_id"] == "trace-42"
    assert server_errors_logged(records, "trace-42")


def test_hostile_request_id_is_replaced():
    with security_settings() as keys:
        response = client_for(keys).get("/api/limited/", headers={"X-Request-ID": "a\tb<script>"})
    assert response["X-Request-ID"] != "a\tb<script>"
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("get", "/nowhere/", None, 404, "not_found"),
        ("get", "/api/nowhere/", None, 404, "not_found"),
        ("delete", "/api/limited/", None, 405, "method_not_allowed"),
        ("post", "/api/limited/", "{not json", 400, "malformed_request"),
        ("post", "/api/limited/", '{"a": ' * 5000, 400, "malformed_request"),
        ("post", "/api/limited/", "[" * 101 + "]" * 101, 400, "malformed_request"),
        ("post", "/plain/ok/", "x", 200, None),
    ],
)
def test_client_errors_are_json_without_internals(method, path, body, status, code):
    with security_settings() as keys:
        client = client_for(keys)
        call = getattr(client, method)
        response = (
            call(path, body, content_type="application/json") if body is not None else call(path)
        )
    if code is None:
        assert response.status_code == status
        return
    assert_safe(response, status, code)


def test_wrong_content_type_is_json_415():
    with security_settings() as keys:
        response = client_for(keys).post("/api/limited/", "a=1", content_type="text/plain")
    assert_safe(response, 415, "unsupported_media_type")


def test_disallowed_host_is_json_400():
    """DisallowedHost is raised by Django's middleware, outside any view."""
    with security_settings(ALLOWED_HOSTS=["saga.example.com"]) as keys:
        response = client_for(keys).get("/api/limited/", HTTP_HOST="evil.example")
    assert_safe(response, 400, "bad_request")


def test_security_headers_present():
    with security_settings() as keys:
        response = client_for(keys).get("/api/limited/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


def test_https_redirect_behind_a_proxy_exempts_health():
    with security_settings(
        SECURE_SSL_REDIRECT=True,
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    ) as keys:
        client = client_for(keys)
        plain = client.get("/api/limited/")
        proxied = client.get("/api/limited/", HTTP_X_FORWARDED_PROTO="https")
        health = client.get("/health/")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    assert proxied.status_code == 200
    assert health.status_code == 404  # not redirected (the test URLconf has no /health/)
