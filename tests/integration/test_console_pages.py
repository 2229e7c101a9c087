"""The console's pages through Django's test client: sign-in, headers, the sagas list,
a saga, definitions, status (DESIGN §9.7)."""

import re
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from sagas.api.auth import CLIENT, INTERNAL
from sagas.models import SagaDefinition, SagaInstance
from tests.api_builders import attempt_row, definition, finished_saga, post_definition, saga_row
from tests.console_helpers import browser, csrf_token, no_key_in, post_form, sign_in, signed_in

pytestmark = [pytest.mark.sqlite, pytest.mark.django_db]

PAGES = ("/console/", "/console/definitions/", "/console/status/")


@pytest.fixture
def checkout(internal_api):
    assert post_definition(internal_api).status_code == 201
    return SagaDefinition.objects.get(name="checkout")


def assert_console_headers(response):
    assert response["Cache-Control"] == "no-store"
    assert response["X-Frame-Options"] == "DENY"
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy


# --- Signing in ----------------------------------------------------------------------------


def test_root_redirects_to_the_console():
    for path in ("/", "/console"):
        response = browser().get(path)
        assert response.status_code == 302 and response["Location"] == "/console/"


def test_signed_out_pages_lead_to_the_sign_in_form():
    client = browser()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/console/sign-in/?next=")
    page = client.get("/console/sign-in/")
    assert page.status_code == 200 and b"<h1>Sign in</h1>" in page.content
    assert_console_headers(page)


@pytest.mark.parametrize("role", [CLIENT, INTERNAL])
def test_each_key_signs_in_and_the_session_holds_no_key(role):
    client = signed_in(role)
    session = client.session
    assert session["console_role"] == role and len(session["console_key_id"]) == 8
    assert settings.SAGA_API_KEY not in str(dict(session))
    assert settings.INTERNAL_API_KEY not in str(dict(session))
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie.value == session.session_key
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert list(client.cookies) == [settings.SESSION_COOKIE_NAME]  # no csrftoken cookie
    page = client.get("/console/")
    assert page.status_code == 200 and f"{role} key".encode() in page.content
    assert_console_headers(page)
    assert no_key_in(page)


def test_a_wrong_key_is_refused_with_a_clear_message():
    client = browser()
    response = sign_in(client, "not-a-key")
    assert response.status_code == 401
    assert b"That is not a valid API key" in response.content
    assert b"not-a-key" not in response.content  # the key typed is not echoed back
    assert client.get("/console/").status_code == 302


def test_sign_in_without_the_csrf_token_is_refused():
    client = browser()
    client.get("/console/sign-in/")
    response = client.post("/console/sign-in/", {"key": settings.SAGA_API_KEY})
    assert response.status_code == 403
    assert b"Form expired or forged" in response.content
    assert_console_headers(response)
    assert client.get("/console/").status_code == 302


def test_the_next_page_is_kept_but_only_inside_the_console():
    client = browser()
    token = csrf_token(client)
    key = settings.SAGA_API_KEY
    data = {"key": key, "csrfmiddlewaretoken": token, "next": "/console/status/"}
    assert client.post("/console/sign-in/", data)["Location"] == "/console/status/"
    client = browser()
    token = csrf_token(client)
    data = {"key": key, "csrfmiddlewaretoken": token, "next": "https://evil.example/"}
    assert client.post("/console/sign-in/", data)["Location"] == "/console/"


def test_sign_out_ends_the_session():
    client = signed_in(CLIENT)
    assert client.get("/console/logout/").status_code == 200  # asks to confirm
    assert client.get("/console/").status_code == 200
    response = post_form(client, "/console/logout/", {}, token_from="/console/logout/")
    assert response.status_code == 302
    assert client.get("/console/").status_code == 302


def test_sign_out_without_the_csrf_token_is_refused():
    client = signed_in(CLIENT)
    assert client.post("/console/logout/").status_code == 403
    assert client.get("/console/").status_code == 200


def test_a_rotated_key_signs_its_sessions_out():
    client = signed_in(CLIENT)
    with override_settings(SAGA_API_KEY="a-new-client-key"):
        assert client.get("/console/").status_code == 302


# --- Rate limits -----------------------------------------------------------------------------


def unique_ip() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def test_wrong_keys_use_up_the_client_ips_window_shared_with_the_api(anon_client):
    ip = unique_ip()
    client = browser(ip)
    with override_settings(RATE_LIMIT_MAX_REQUESTS=3):
        assert client.get("/console/sign-in/").status_code == 200  # 1
        token = csrf_token(client)  # 2
        data = {"key": "wrong", "csrfmiddlewaretoken": token}
        assert client.post("/console/sign-in/", data).status_code == 401  # 3
        refused = client.post("/console/sign-in/", data)
        assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
        assert b"Too many requests" in refused.content
        assert_console_headers(refused)
        # The API's guesses from that address share the window.
        api = anon_client.get("/api/sagas/", HTTP_X_API_KEY="wrong", REMOTE_ADDR=ip)
        assert api.status_code == 429


def test_a_session_has_its_own_window_apart_from_the_keys_api_budget(client_api):
    # A SECRET_KEY of its own: this test's key and session windows are fresh.
    with override_settings(SECRET_KEY=f"secret-{uuid.uuid4()}", RATE_LIMIT_MAX_REQUESTS=4):
        client = signed_in(CLIENT, unique_ip())  # the IP's window: 2 requests
        seen = [client.get("/console/definitions/") for _ in range(5)]
        assert [r.status_code for r in seen] == [200, 200, 200, 200, 429]
        assert seen[0]["X-RateLimit-Limit"] == "4"
        assert client_api.get("/api/sagas/").status_code == 200  # the key's API budget


# --- The sagas list --------------------------------------------------------------------------


def sagas_page(client, query: str = "") -> str:
    response = client.get("/console/" + query)
    assert response.status_code == 200, response.content[:2000]
    return response.content.decode()


def listed_ids(html: str) -> list[str]:
    return re.findall(r'href="/console/sagas/([0-9a-f-]{36})/"', html)


def test_the_list_shows_sagas_newest_first_with_counts_per_status(checkout):
    old = finished_saga("completed", minutes_ago=30)
    failed = finished_saga("failed", minutes_ago=5)
    running = saga_row(status="running")
    html = sagas_page(signed_in(CLIENT))
    assert listed_ids(html) == [str(running.id), str(failed.id), str(old.id)]
    tabs = dict(re.findall(r"</span>(\w+) <span class=\"count\">(\d+)</span>", html))
    assert tabs["completed"] == "1" and tabs["failed"] == "1" and tabs["running"] == "1"
    assert tabs["pending"] == "0"
    assert 'data-refresh="5"' in html
    assert '<script src="/static/console/console.js" defer></script>' in html


def test_the_list_filters_like_the_api_and_searches_by_id_or_idempotency_key(
    checkout, internal_api
):
    other = dict(definition(name="refund"))
    assert post_definition(internal_api, other).status_code == 201
    done = finished_saga("completed", minutes_ago=10)
    refund = saga_row("refund", status="running")
    keyed = saga_row(idempotency_key="order-77")
    client = signed_in(CLIENT)
    assert listed_ids(sagas_page(client, "?status=completed")) == [str(done.id)]
    assert listed_ids(sagas_page(client, "?definition=refund")) == [str(refund.id)]
    assert listed_ids(sagas_page(client, f"?q={done.id}")) == [str(done.id)]
    assert listed_ids(sagas_page(client, "?q=order-77")) == [str(keyed.id)]
    after = (timezone.now() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    recent = listed_ids(sagas_page(client, f"?created_after={after}"))
    assert str(done.id) not in recent and str(refund.id) in recent
    before = listed_ids(sagas_page(client, f"?created_before={after}"))
    assert before == [str(done.id)]


def test_a_bad_filter_is_a_clear_400_page(checkout):
    client = signed_in(CLIENT)
    response = client.get("/console/?status=bogus&created_after=yesterday")
    assert response.status_code == 400
    assert b"These filters cannot be used" in response.content
    assert b"status" in response.content and b"created_after" in response.content
    assert client.get("/console/?before=garbage").status_code == 400


def test_pages_follow_a_keyset_cursor_both_ways(checkout):
    start = timezone.now() - timedelta(hours=1)
    sagas = [saga_row() for _ in range(53)]
    for i, saga in enumerate(sagas):  # distinct times, oldest first
        SagaInstance.objects.filter(id=saga.id).update(created_at=start + timedelta(seconds=i))
    newest_first = [str(s.id) for s in reversed(sagas)]
    client = signed_in(CLIENT)
    first = sagas_page(client)
    assert listed_ids(first) == newest_first[:50]
    older = re.search(r'href="\?([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = sagas_page(client, "?" + older)
    assert listed_ids(second) == newest_first[50:]
    assert 'rel="next"' not in second
    newer = re.search(r'href="\?([^"]+)" rel="prev"', second).group(1).replace("&amp;", "&")
    assert listed_ids(sagas_page(client, "?" + newer)) == newest_first[:50]


# --- A saga ------------------------------------------------------------------------------------


def test_a_saga_page_shows_status_steps_timeline_and_every_attempt(checkout, client_api):
    saga = finished_saga(
        "compensated",
        error={"code": "step_failed", "step": "charge", "message": "HTTP 422: card declined"},
        saga_input={"order_id": "A-1"},
    )
    now = timezone.now()
    attempt_row(saga, "reserve", started_at=now - timedelta(seconds=3))
    attempt_row(
        saga,
        "charge",
        started_at=now - timedelta(seconds=2),
        status_code=503,
        outcome="retryable_error",
        error="HTTP 503",
    )
    attempt_row(
        saga,
        "charge",
        attempt=2,
        started_at=now - timedelta(seconds=1),
        status_code=422,
        outcome="permanent_error",
        error="HTTP 422: card declined",
        request_headers={"Content-Type": "application/json", "X-API-Key": "***"},
        request_body={"reservation": "r-9"},
        response_body={"error": "card declined"},
    )
    attempt_row(saga, "reserve", phase="compensation", started_at=now, method="DELETE")
    response = signed_in(CLIENT).get(f"/console/sagas/{saga.id}/")
    assert response.status_code == 200
    assert_console_headers(response)
    html = response.content.decode()
    assert "compensated: charge failed — HTTP 422: card declined" in html
    logs = client_api.get(f"/api/sagas/{saga.id}/logs/").json()
    bars = re.findall(r'<rect class="bar outcome-(\w+)"', html)
    assert bars == [entry["outcome"] for entry in logs]
    for index in range(len(logs)):
        assert f'href="#attempt-{index}"' in html and f'id="attempt-{index}"' in html
    assert "&quot;reservation&quot;: &quot;r-9&quot;" in html  # the request body
    assert "&quot;error&quot;: &quot;card declined&quot;" in html  # the response body
    assert "X-API-Key" in html and "***" in html
    assert 'class="wait"' in html  # the wait between the two charge attempts
    assert "&quot;order_id&quot;: &quot;A-1&quot;" in html  # the input
    assert " style=" not in html  # CSP: no inline style anywhere
    assert no_key_in(response)


def test_a_call_in_flight_is_drawn_up_to_now(checkout):
    saga = saga_row(status="running")
    steps = saga.steps
    steps[0].update(
        status="running",
        in_flight={
            "phase": "action",
            "attempt": 1,
            "method": "POST",
            "url": "http://participant.test:8000/reservations",
            "started_at": (timezone.now() - timedelta(seconds=2)).isoformat(),
        },
    )
    SagaInstance.objects.filter(id=saga.id).update(steps=steps)
    html = signed_in(CLIENT).get(f"/console/sagas/{saga.id}/").content.decode()
    assert re.findall(r'<rect class="bar outcome-(\w+)"', html) == ["in_flight"]
    assert "running: step reserve (0 of 2 succeeded)" in html
    assert 'data-refresh="3"' in html


def test_an_unknown_saga_is_a_404_page():
    response = signed_in(CLIENT).get(f"/console/sagas/{uuid.uuid4()}/")
    assert response.status_code == 404
    assert b"No such saga" in response.content
    assert response["Content-Type"].startswith("text/html")


# --- Definitions and status --------------------------------------------------------------------


def test_definitions_list_versions_and_diagram(checkout, internal_api):
    changed = definition(description="with a longer retry")
    changed["steps"][1]["retry"] = {"max_attempts": 4, "delay_seconds": 2}
    assert post_definition(internal_api, changed).status_code == 201
    client = signed_in(CLIENT)
    listing = client.get("/console/definitions/")
    assert listing.status_code == 200 and b"checkout" in listing.content
    latest = client.get("/console/definitions/checkout/").content.decode()
    assert "v2" in latest and 'href="?version=1"' in latest
    assert "4 attempts, wait 2 s ×2 up to 60 s" in latest
    assert "DELETE http://participant.test:8000/reservations/" in latest
    assert "none (nothing to undo)" in latest
    first = client.get("/console/definitions/checkout/?version=1").content.decode()
    assert "4 attempts" not in first
    assert client.get("/console/definitions/checkout/?version=9").status_code == 404
    assert client.get("/console/definitions/checkout/?version=x").status_code == 400


def test_a_parallel_group_is_drawn_side_by_side(checkout):
    member = {"name": "a", "action": {"method": "POST", "url": "http://x.test/a"}}
    SagaDefinition.objects.create(
        name="fanout",
        version=1,
        timeout_seconds=60,
        content_hash="0" * 64,
        steps=[
            {"name": "prepare", "parallel": [member, {**member, "name": "b"}]},
            {**member, "name": "after"},
        ],
    )
    html = signed_in(CLIENT).get("/console/definitions/fanout/").content.decode()
    members = re.search(r'<div class="members">(.*?)</div>\s*</div>\s*</li>', html, re.S)
    assert members and members.group(1).count('<div class="card">') == 2
    assert "prepare" in html and "in parallel" in html


def test_status_page_shows_figures_health_and_charts(checkout):
    finished_saga("completed", minutes_ago=3)
    finished_saga("compensated", minutes_ago=10)
    response = signed_in(INTERNAL).get("/console/status/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Success rate (1 h)" in html and "50 %" in html
    assert "compensation_rate_high" in html  # 50% compensated: an alert
    assert "(now 50.0 %, threshold 10.0 %)" in html
    assert ">database<" in html.replace("<td>", ">").replace("</td>", "<")
    assert html.count('<figure class="chart">') == 3
    assert html.count('class="chart-bar"') >= 4  # 2 starts, 2 finishes… in their minutes
    assert_console_headers(response)


def test_no_page_carries_a_key(checkout):
    saga = finished_saga("failed")
    for role in (CLIENT, INTERNAL):
        client = signed_in(role)
        for path in (*PAGES, f"/console/sagas/{saga.id}/", "/console/definitions/checkout/"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert no_key_in(response), path


def test_the_api_and_its_docs_set_no_cookie_and_store_no_session(client_api):
    from django.contrib.sessions.models import Session

    for response in (client_api.get("/api/sagas/"), browser().get("/api/docs/")):
        assert response.status_code == 200
        assert not response.cookies
    assert not Session.objects.exists()


def test_a_signed_in_visit_to_the_sign_in_page_goes_on_to_the_console():
    client = signed_in(CLIENT)
    assert client.get("/console/sign-in/")["Location"] == "/console/"


def test_sign_ins_are_logged_with_the_role_and_key_id_never_the_key(caplog):
    caplog.set_level("INFO", logger="sagas.console")
    client = signed_in(INTERNAL)
    sign_in(browser(), "a-wrong-key-typed-in")
    events = [(r.getMessage(), getattr(r, "event", None)) for r in caplog.records]
    assert ("console sign-in", "console_sign_in") in events
    assert ("console sign-in refused", "console_sign_in_refused") in events
    signed = next(r for r in caplog.records if r.getMessage() == "console sign-in")
    assert signed.role == "internal" and signed.key_id == client.session["console_key_id"]
    for record in caplog.records:
        text = repr(record.__dict__)
        assert settings.INTERNAL_API_KEY not in text and "a-wrong-key-typed-in" not in text


def test_a_saga_waiting_out_a_retry_says_when_its_next_call_is_due(checkout):
    due = timezone.now() + timedelta(seconds=30)
    saga = saga_row(status="running", next_attempt_at=due)
    html = signed_in(CLIENT).get(f"/console/sagas/{saga.id}/").content.decode()
    assert f"{due:%Y-%m-%d %H:%M:%S} (a retry wait)" in html


def test_every_console_response_carries_the_headers_and_no_key(checkout):
    saga = finished_saga("failed")
    client = signed_in(INTERNAL)
    answers = {
        "/console/": 200,
        f"/console/sagas/{saga.id}/": 200,
        f"/console/sagas/{uuid.uuid4()}/": 404,
        "/console/?status=nope": 400,
        "/console/definitions/": 200,
        "/console/definitions/checkout/": 200,
        "/console/definitions/nothing/": 404,
        "/console/status/": 200,
        "/console/logout/": 200,
        "/console/sign-in/": 302,
    }
    for path, status in answers.items():
        response = client.get(path)
        assert response.status_code == status, path
        assert_console_headers(response)
        assert no_key_in(response), path
    refused = client.post(f"/console/sagas/{saga.id}/retry/", {"confirm": "on"})  # no token
    assert refused.status_code == 403
    assert_console_headers(refused)
