"""Swagger UI and ReDoc render in headless Chromium, served by Gunicorn, with no internet.

Requires Debian's Chromium (/usr/bin/chromium): the test fails, never skips, without it.
"""

import re
import shutil

import pytest
from django.conf import settings
from playwright.sync_api import sync_playwright

from tests.gunicorn_server import gunicorn

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def api_server(db, tmp_path):
    """Gunicorn on the test database (`db` makes pytest-django create it)."""
    env = {"DB_NAME": settings.DATABASES["default"]["NAME"]}
    with gunicorn(tmp_path, env) as base:
        yield base


@pytest.fixture
def browser(monkeypatch):
    executable = shutil.which("chromium")
    assert executable, "Debian chromium is required (apt-get install chromium)"
    # Playwright's sync API runs an event loop; pytest-django would refuse DB access then.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def offline_page(browser, base: str):
    """A page that may only reach the service: any other request is recorded and aborted."""
    page = browser.new_page()
    foreign: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(base) or url.startswith("data:") or url.startswith("blob:"):
            request_route.continue_()
        else:
            foreign.append(url)
            request_route.abort()

    page.route("**/*", route)
    return page, foreign


def test_swagger_ui_shows_operations_and_tries_a_call(api_server, browser):
    page, foreign = offline_page(browser, api_server)
    page.goto(api_server + "/api/docs/")

    page.wait_for_selector(".swagger-ui .opblock", timeout=30000)
    assert page.locator(".swagger-ui .opblock").count() >= 12
    assert page.locator(".swagger-ui .btn.authorize").count() == 1

    # Authorize with the client key, then run GET /api/sagas/ from the page.
    page.click(".swagger-ui .btn.authorize")
    page.fill(".swagger-ui .modal-ux input", settings.SAGA_API_KEY)
    page.click(".swagger-ui .modal-ux .auth-btn-wrapper .authorize")
    page.click(".swagger-ui .modal-ux .btn-done")
    page.click("#operations-sagas-sagas_list .opblock-summary")
    page.click("#operations-sagas-sagas_list .try-out__btn")
    page.click("#operations-sagas-sagas_list .execute")
    status = page.locator(
        "#operations-sagas-sagas_list .live-responses-table tbody .response-col_status"
    )
    status.first.wait_for(timeout=15000)
    assert status.first.inner_text().strip().startswith("200")
    assert foreign == []


def test_redoc_shows_the_api(api_server, browser):
    page, foreign = offline_page(browser, api_server)
    page.goto(api_server + "/api/redoc/")

    heading = page.get_by_role("heading", name=re.compile("Saga Orchestrator API"))
    heading.first.wait_for(timeout=30000)
    assert page.get_by_role("heading", name=re.compile("Start a saga")).count() >= 1
    # ReDoc's bundle always asks for its "powered by" logo and hides it when that fails;
    # nothing else may leave the machine (fonts are dropped by sagas/redoc.html).
    assert [url for url in foreign if url != REDOC_LOGO] == []
