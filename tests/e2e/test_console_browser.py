"""The operator console in Debian's Chromium, driven by Playwright, against Gunicorn on the
test database: the demo's sagas (examples/order_checkout.json against
scripts/demo_participants.py), started through the API and run by a worker.

On both databases (PostgreSQL with Redis; SQLite without, as `make run` serves it).
Screenshots of the sagas list and of a compensated saga go to SCREENSHOTS_DIR when it is
set (`make screenshots` sets docs/), else to the test's temporary directory; either way
the test looks at them. Requires /usr/bin/chromium: the test fails, never skips, without it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from sagas.models import TERMINAL_STATUSES, SagaInstance
from tests.e2e.test_docs_browser import browser, offline_page  # noqa: F401 (fixture)
from tests.e2e.workers import ROOT
from tests.gunicorn_server import gunicorn
from tests.support import free_port, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.sqlite]

ORDER = {
    "order_id": "A-1",
    "items": [{"sku": "book", "qty": 1}],
    "amount": 42,
    "address": "1 Main St",
}
# What sticks out on the right (the timeline scrolls inside its own box).
WIDER_THAN_THE_SCREEN = """[...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > innerWidth + 1 && !e.closest(".timeline-wrap"))
  .slice(0, 5).map((e) => `${e.tagName}.${e.className} ${e.textContent.slice(0, 30)}`)"""
# Rendered pages are tens of KB as PNG; a blank page is about 5 KB.
MIN_SCREENSHOT_BYTES = 20_000


@pytest.fixture
def demo_port():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "scripts/demo_participants.py", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _serving(f"http://127.0.0.1:{port}/health"), timeout=10)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def _serving(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


@pytest.fixture
def service(transactional_db, tmp_path):
    """Gunicorn on the test database; committed rows (transactional_db) are what it sees."""
    database = connection.settings_dict["NAME"]
    env = {"DB_NAME": database, "REDIS_DB": str(settings.REDIS_DB)}
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = database  # the embedded default, as `make run` serves it
    with gunicorn(tmp_path, env) as base:
        yield base


def api(base: str, method: str, path: str, key: str, **kwargs):
    response = requests.request(
        method, base + path, headers={"X-API-Key": key}, timeout=10, **kwargs
    )
    assert response.status_code < 300, response.text
    return response.json()


@pytest.fixture
def demo_sagas(service, demo_port, workers):
    """A completed saga, two compensated ones (a declined card; a shipping outage,
    retried), run by a saga worker process, and one still pending; by name."""
    text = (ROOT / "examples/order_checkout.json").read_text()
    example = json.loads(text.replace("127.0.0.1:8009", f"127.0.0.1:{demo_port}"))
    api(service, "POST", "/api/saga-definitions/", settings.INTERNAL_API_KEY, json=example)
    inputs = {
        "completed": ORDER,
        "declined": {**ORDER, "order_id": "A-2", "card": "declined"},
        "outage": {**ORDER, "order_id": "A-3", "fail": "shipping"},
    }
    sagas = {}
    worker = workers()
    for name, saga_input in inputs.items():
        body = {"definition": "order_checkout", "input": saga_input}
        started = api(service, "POST", "/api/sagas/", settings.SAGA_API_KEY, json=body)
        sagas[name] = wait_until(lambda s=started: finished(s["id"]), timeout=30)
    worker.close()  # the pending saga below stays pending
    body = {"definition": "order_checkout", "input": {**ORDER, "order_id": "A-4"}}
    sagas["pending"] = api(service, "POST", "/api/sagas/", settings.SAGA_API_KEY, json=body)
    return sagas


def finished(saga_id: str) -> SagaInstance | None:
    saga = SagaInstance.objects.get(id=saga_id)
    return saga if saga.status in TERMINAL_STATUSES else None


def sign_in(page, base: str, key: str):
    page.goto(base + "/console/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    if not folder.is_absolute():
        folder = ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def looked_at(path: Path) -> None:
    assert path.stat().st_size > MIN_SCREENSHOT_BYTES, f"{path} looks blank"


def test_sign_in_with_each_key_and_a_wrong_key_is_refused(service, browser):  # noqa: F811
    page, foreign = offline_page(browser, service)
    sign_in(page, service, "not-a-key")
    page.get_by_text("That is not a valid API key").wait_for()
    assert page.get_by_role("heading", name="Sign in").is_visible()
    for key, role in ((settings.SAGA_API_KEY, "client"), (settings.INTERNAL_API_KEY, "internal")):
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, service, key)
        page.get_by_role("heading", name="Sagas").wait_for()
        assert page.get_by_text(f"{role} key").is_visible()
        cookies = context.cookies()
        assert [c["name"] for c in cookies] == ["saga_console"]
        assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
        assert key not in page.content() and key not in cookies[0]["value"]
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("heading", name="Sign in").wait_for()
        context.close()
    assert foreign == []


def test_the_list_shows_the_demo_sagas_and_filters_them(
    service,
    demo_sagas,
    browser,  # noqa: F811
    tmp_path,
):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, service, settings.SAGA_API_KEY)
    rows = page.locator("table.sagas tbody tr")
    rows.first.wait_for()
    assert rows.count() == 4
    page.select_option("#f-status", "compensated")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"status=compensated"))
    assert rows.count() == 2
    shown = page.locator("table.sagas tbody a").all_inner_texts()
    wanted = {str(demo_sagas[name].id)[:8] for name in ("declined", "outage")}
    assert {text.rstrip("…") for text in shown} == wanted
    # A refresh keeps the filter: the live region is replaced by the same URL's.
    page.wait_for_timeout(5500)
    assert rows.count() == 2 and "status=compensated" in page.url
    page.get_by_label("Saga id or Idempotency-Key").fill(str(demo_sagas["completed"].id))
    page.select_option("#f-status", "")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"q="))
    assert rows.count() == 1
    page.goto(service + "/console/")
    rows.first.wait_for()
    shot = screenshot_dir(tmp_path) / "console-sagas.png"
    page.screenshot(path=str(shot))
    looked_at(shot)
    assert page.get_by_role("heading", name="Sagas").is_visible()
    context.close()


def test_a_compensated_sagas_timeline_has_every_attempt_and_opens_one(
    service,
    demo_sagas,
    browser,  # noqa: F811
    tmp_path,
):
    saga = demo_sagas["outage"]
    logs = api(service, "GET", f"/api/sagas/{saga.id}/logs/", settings.SAGA_API_KEY)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, service, settings.INTERNAL_API_KEY)
    page.goto(f"{service}/console/sagas/{saga.id}/")
    page.get_by_role("heading", name="Timeline").wait_for()
    bars = page.locator("svg.timeline rect.bar")
    assert bars.count() == len(logs) == 7  # 3 actions, a shipping retry, 3 compensations
    classes = bars.evaluate_all("bars => bars.map(bar => bar.className.baseVal)")
    outcomes = [name.split("outcome-")[1] for name in classes]
    assert outcomes == [entry["outcome"] for entry in logs]
    assert page.get_by_text("compensated: ship_order failed").is_visible()
    # Select the first shipping attempt: its request and response open below.
    first_ship = next(i for i, e in enumerate(logs) if e["step"] == "ship_order")
    page.locator(f'a.bar-link[data-attempt="{first_ship}"]').click()
    details = page.locator(f"#attempt-{first_ship}")
    assert details.get_attribute("open") is not None
    assert details.get_by_role("heading", name="Request").is_visible()
    assert details.get_by_text(logs[first_ship]["url"]).first.is_visible()
    assert details.get_by_role("heading", name="Response").is_visible()
    assert details.get_by_text("HTTP 503").first.is_visible()
    shot = screenshot_dir(tmp_path) / "console-saga.png"
    page.screenshot(path=str(shot), full_page=True)
    looked_at(shot)
    # 390 px wide: nothing wider than the screen but the timeline's own scroller.
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_the_client_key_has_no_internal_actions_and_their_posts_are_refused(
    service,
    demo_sagas,
    browser,  # noqa: F811
):
    pending = demo_sagas["pending"]
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, service, settings.SAGA_API_KEY)
    page.goto(f"{service}/console/sagas/{pending['id']}/")
    page.get_by_role("heading", name="Actions").wait_for()
    assert page.locator("form.action-cancel").count() == 1
    for action in ("retry", "pause", "resume"):
        assert page.locator(f"form.action-{action}").count() == 0
    token = page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")
    for action in ("retry", "pause", "resume"):
        url = f"{service}/console/sagas/{pending['id']}/{action}/"
        form = {"csrfmiddlewaretoken": token, "confirm": "on", "reason": "test"}
        refused = context.request.post(url, form=form, headers={"Referer": url})
        assert refused.status == 403, action
    url = f"{service}/console/sagas/{pending['id']}/cancel/"
    no_token = context.request.post(url, form={"confirm": "on"}, headers={"Referer": url})
    assert no_token.status == 403
    # Read through the API: an ORM query inside Playwright's event loop would open a
    # database connection that the test database's teardown then finds still open.
    still = api(service, "GET", f"/api/sagas/{pending['id']}/", settings.SAGA_API_KEY)
    assert still["status"] == "pending"
    context.close()


@pytest.fixture
def repair_case(service, demo_port, workers):
    """examples/order_checkout_repairable.json (`on_failure: pause`) through the API, a saga
    of it left pending (no worker yet), and `start_worker()`."""
    text = (ROOT / "examples/order_checkout_repairable.json").read_text()
    example = json.loads(text.replace("127.0.0.1:8009", f"127.0.0.1:{demo_port}"))
    api(service, "POST", "/api/saga-definitions/", settings.INTERNAL_API_KEY, json=example)
    body = {"definition": example["name"], "input": ORDER}
    pending = api(service, "POST", "/api/sagas/", settings.SAGA_API_KEY, json=body)
    # No house number: shipping answers 422 and the saga pauses.
    undeliverable = {"definition": example["name"], "input": {**ORDER, "address": "Main St"}}
    return {"pending": pending["id"], "undeliverable": undeliverable, "start_worker": workers}


def act(page, action: str, reason: str, patch: str | None = None) -> None:
    form = page.locator(f"#form-{action}")
    if patch is not None:
        form.get_by_label("Input patch").fill(patch)
    form.get_by_label("Reason").fill(reason)
    form.get_by_label(re.compile(f"Yes, {action}")).check()
    form.get_by_role("button", name=action.capitalize()).click()
    page.get_by_text(f"{action.capitalize()} accepted.").wait_for()


def test_the_internal_key_pauses_and_resumes_with_an_input_patch(
    service,
    repair_case,
    browser,  # noqa: F811
):
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, service, settings.INTERNAL_API_KEY)
    # Pause: the saga waits for an operator; the worker leaves it alone.
    page.goto(f"{service}/console/sagas/{repair_case['pending']}/")
    act(page, "pause", "hold while payments deploy")
    page.get_by_text("waiting for an operator").first.wait_for()
    assert page.locator("#form-resume").count() == 1
    repair_case["start_worker"]()
    act(page, "resume", "payments are back")
    page.get_by_text("completed: every step succeeded").wait_for(timeout=30000)  # refreshed
    # An address shipping rejects pauses the saga (on_failure: pause); a patch repairs it.
    started = api(
        service, "POST", "/api/sagas/", settings.SAGA_API_KEY, json=repair_case["undeliverable"]
    )
    page.goto(f"{service}/console/sagas/{started['id']}/")
    page.get_by_text("paused: ship_order failed").wait_for(timeout=30000)  # refreshed
    page.locator("#form-resume").wait_for()  # the actions follow the status
    patch = page.locator("#form-resume").get_by_label("Input patch")
    patch.fill('{"address": 1 Main St}')  # the page says at once that this is not JSON
    assert "Not valid JSON" in patch.evaluate("field => field.validationMessage")
    act(page, "resume", "address checked with the customer", patch='{"address": "1 Main St"}')
    page.get_by_text("completed: every step succeeded").wait_for(timeout=30000)
    history = page.locator("table.history").inner_text()
    assert "address checked with the customer" in history and "resumed" in history
    saga = api(service, "GET", f"/api/sagas/{started['id']}/", settings.SAGA_API_KEY)
    assert saga["status"] == "completed" and saga["input"]["address"] == "1 Main St"
    context.close()


def test_every_page_fits_a_phone_and_loads_nothing_from_elsewhere(
    service,
    demo_sagas,
    browser,  # noqa: F811
):
    page, foreign = offline_page(browser, service)
    page.set_viewport_size({"width": 390, "height": 800})
    sign_in(page, service, settings.INTERNAL_API_KEY)
    page.get_by_role("heading", name="Sagas").wait_for()
    paths = {
        "/console/": "Sagas",
        f"/console/sagas/{demo_sagas['declined'].id}/": "Timeline",
        "/console/definitions/": "Definitions",
        "/console/definitions/order_checkout/": "Steps",
        "/console/status/": "The last hour",
    }
    for path, heading in paths.items():
        page.goto(service + path)
        page.get_by_role("heading", name=heading).wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        wide = page.evaluate(WIDER_THAN_THE_SCREEN)
        assert width <= 390, f"{path} is {width} px wide: {wide}"
    assert foreign == []
