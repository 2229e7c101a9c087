"""Builders for console tests: a browser-like test client signed in with a key, the CSRF
token of a page, rows of sagas and attempts."""

import re

from django.conf import settings
from django.test import Client

from sagas.api.auth import CLIENT, INTERNAL

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
KEYS = {CLIENT: "SAGA_API_KEY", INTERNAL: "INTERNAL_API_KEY"}


def browser(remote_addr: str = "127.0.0.1") -> Client:
    """A test client that, like a browser, must send the CSRF token of a form."""
    return Client(enforce_csrf_checks=True, REMOTE_ADDR=remote_addr)


def csrf_token(client: Client, path: str = "/console/sign-in/") -> str:
    page = client.get(path)
    found = TOKEN.search(page.content.decode())
    assert found, f"no CSRF token on {path} ({page.status_code})"
    return found.group(1)


def sign_in(client: Client, key: str):
    token = csrf_token(client)
    return client.post("/console/sign-in/", {"key": key, "csrfmiddlewaretoken": token})


def signed_in(role: str, remote_addr: str = "127.0.0.1") -> Client:
    client = browser(remote_addr)
    response = sign_in(client, getattr(settings, KEYS[role]))
    assert response.status_code == 302, response.content[:500]
    return client


def post_form(client: Client, path: str, data: dict, token_from: str):
    """POST `data` with the CSRF token of the page at `token_from`, as a browser would."""
    return client.post(path, {**data, "csrfmiddlewaretoken": csrf_token(client, token_from)})


def no_key_in(response) -> bool:
    body = response.content.decode(errors="replace")
    cookies = " ".join(morsel.OutputString() for morsel in response.cookies.values())
    headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
    keys = (settings.SAGA_API_KEY, settings.INTERNAL_API_KEY)
    return not any(key in text for key in keys for text in (body, cookies, headers))
