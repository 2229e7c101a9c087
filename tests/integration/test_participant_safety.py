"""Participant safety (SSRF) at call time, with real participant servers: the allow-list and
the metadata refusal apply to template-built URLs and to each redirect hop; names are
checked by what they resolve to; allowed redirects are followed per RFC 9110."""

import socket

import pytest
from django.test import override_settings

from sagas.engine import participants as client
from tests.participants import Reply
from tests.saga_builders import attempts, call, definition_create, drive, saga_create, step

pytestmark = pytest.mark.django_db

METADATA = "169.254.169.254"


@pytest.fixture(autouse=True)
def fresh_resolution_caches(monkeypatch):
    monkeypatch.setattr(client, "_resolved", {})
    monkeypatch.setattr(client, "_verdicts", {})


@pytest.fixture
def fake_dns(monkeypatch):
    """Stands in for DNS: names in `zone` resolve to the given address (others fail)."""
    zone: dict[str, str] = {}
    lookups: list[str] = []

    def resolve(host, port, *args, **kwargs):
        lookups.append(host)
        if host not in zone:
            raise socket.gaierror(socket.EAI_NONAME, "unknown name")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (zone[host], port))]

    monkeypatch.setattr(client, "_resolve", resolve)
    return zone, lookups


def one_step(url: str, *, headers=None, body=None, name="guarded"):
    return definition_create([step("one", call(url, headers=headers, body=body))], name=name)


def run(worker, url: str, saga_input=None, **spec):
    return drive(worker, saga_create(one_step(url, **spec), saga_input or {}))


@override_settings(SAGA_ALLOWED_HOSTS=["127.0.0.1"])
def test_an_allowed_host_is_called(participants, worker):
    participants.script("POST", "/one", Reply(200, {"ok": True}))
    done = run(worker, participants.url("/one"))
    assert done.status == "completed"
    assert len(participants.received("POST", "/one")) == 1


@override_settings(SAGA_ALLOWED_HOSTS=["127.0.0.1"])
def test_a_template_built_host_outside_the_list_is_refused_at_call_time(participants, worker):
    url = f"http://${{input.host}}:{participants.port}/one"
    # `localhost` reaches the very same server, but only 127.0.0.1 is allowed.
    refused = run(worker, url, {"host": "localhost"})
    assert refused.status == "compensated"
    assert refused.error["message"] == "URL host localhost is not in SAGA_ALLOWED_HOSTS"
    assert participants.received() == []

    allowed = run(worker, url, {"host": "127.0.0.1"})
    assert allowed.status == "completed"
    assert len(participants.received("POST", "/one")) == 1


def test_the_metadata_address_is_refused_even_without_an_allow_list(worker):
    done = run(worker, "http://${input.host}/latest/meta-data", {"host": METADATA})
    assert done.status == "compensated"
    assert done.error["message"] == f"URL host {METADATA} is a link-local or metadata address"
    (attempt,) = attempts(done)
    assert attempt.outcome == "permanent_error" and attempt.status_code is None


def test_a_name_resolving_to_the_metadata_address_is_refused(worker, fake_dns):
    zone, _ = fake_dns
    zone["metadata.test"] = METADATA
    done = run(worker, "http://metadata.test/latest/meta-data")
    assert done.status == "compensated"
    assert done.error["message"] == (
        "URL host metadata.test resolves to a link-local or metadata address"
    )


def test_a_name_is_resolved_once_per_ttl_and_connected_to_the_checked_address(
    participants, worker, fake_dns
):
    zone, lookups = fake_dns
    zone["inventory.test"] = "127.0.0.1"
    url = f"http://inventory.test:{participants.port}/one"
    for _ in range(3):
        assert run(worker, url).status == "completed"
    assert len(participants.received("POST", "/one")) == 3
    # One lookup for the check; the connection reused its answer (and was kept alive).
    assert lookups == ["inventory.test"]
    # A later answer pointing at the metadata address is refused, not connected to.
    zone["inventory.test"] = METADATA
    client._resolved.clear()
    client._verdicts.clear()
    done = run(worker, url)
    assert done.error["message"].endswith("resolves to a link-local or metadata address")
    assert len(participants.received("POST", "/one")) == 3


@pytest.mark.parametrize("status", [307, 308])
def test_307_and_308_are_followed_with_method_body_and_key(participants, worker, status):
    participants.script(
        "POST", "/one", Reply(status, headers={"Location": participants.url("/moved")})
    )
    participants.script("POST", "/moved", Reply(201, {"id": "r-1"}))
    done = run(
        worker,
        participants.url("/one"),
        body={"order": "${input.order}"},
        saga_input={"order": "A-1"},
    )
    assert done.status == "completed"
    assert done.steps[0]["response"] == {"id": "r-1"}
    (first,), (moved,) = (
        participants.received("POST", "/one"),
        participants.received("POST", "/moved"),
    )
    assert moved.body == first.body == {"order": "A-1"}
    assert moved.header("Idempotency-Key") == first.header("Idempotency-Key")
    (attempt,) = attempts(done)  # one attempt, whatever the hops
    assert attempt.status_code == 201


def test_303_becomes_a_get_without_body_and_relative_locations_work(participants, worker):
    participants.script("POST", "/one", Reply(303, headers={"Location": "/result?id=7"}))
    participants.script("GET", "/result?id=7", Reply(200, {"state": "done"}))
    done = run(worker, participants.url("/one"), body={"a": 1})
    assert done.status == "completed"
    assert done.steps[0]["response"] == {"state": "done"}
    (followed,) = participants.received("GET", "/result?id=7")
    assert followed.body is None


def test_a_redirect_to_the_metadata_address_is_not_followed(participants, worker):
    target = f"http://{METADATA}/latest/meta-data"
    participants.script("POST", "/one", Reply(302, headers={"Location": target}))
    done = run(worker, participants.url("/one"))
    assert done.status == "compensated"
    assert done.error["message"] == f"HTTP 302: redirect to {target} not followed"


def test_a_redirect_to_a_name_resolving_to_metadata_is_refused(participants, worker, fake_dns):
    zone, _ = fake_dns
    zone["evil.test"] = METADATA
    participants.script("POST", "/one", Reply(307, headers={"Location": "http://evil.test/x"}))
    done = run(worker, participants.url("/one"))
    assert done.status == "compensated"
    assert done.error["message"] == (
        "URL host evil.test resolves to a link-local or metadata address"
    )


def test_redirect_loops_stop_after_five_hops(participants, worker):
    participants.script("POST", "/one", Reply(307, headers={"Location": "/one"}))
    done = run(worker, participants.url("/one"))
    assert done.status == "compensated"
    assert done.error["message"] == "more than 5 redirects"
    assert len(participants.received("POST", "/one")) == 6


@override_settings(SAGA_ALLOWED_HOSTS=["127.0.0.1", "localhost"])
def test_only_the_services_own_headers_follow_a_redirect_to_another_origin(participants, worker):
    elsewhere = f"http://localhost:{participants.port}/moved"
    participants.script("POST", "/one", Reply(307, headers={"Location": elsewhere}))
    headers = {"Authorization": "Bearer t", "X-Api-Token": "secret", "X-Tenant": "acme"}
    done = run(worker, participants.url("/one"), headers=headers)
    assert done.status == "completed"
    (first,), (moved,) = (
        participants.received("POST", "/one"),
        participants.received("POST", "/moved"),
    )
    assert [first.header(name) for name in headers] == ["Bearer t", "secret", "acme"]
    # Any header a definition set may be a credential: none leaves the origin.
    assert [moved.header(name) for name in headers] == [None, None, None]
    own_headers = ("Content-Type", "Idempotency-Key", "X-Saga-Id", "X-Saga-Step", "X-Request-ID")
    for own in (*own_headers, "traceparent"):
        assert moved.header(own) == first.header(own) is not None


def test_a_redirect_within_the_origin_keeps_the_definitions_headers(participants, worker):
    participants.script("POST", "/one", Reply(307, headers={"Location": "/moved"}))
    headers = {"Authorization": "Bearer t", "X-Tenant": "acme"}
    assert run(worker, participants.url("/one"), headers=headers).status == "completed"
    (moved,) = participants.received("POST", "/moved")
    assert moved.header("Authorization") == "Bearer t" and moved.header("X-Tenant") == "acme"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a\r\nX-Injected: 1", "must not contain CR, LF or NUL"),
        ("a\x0bb", "must not contain control characters"),
        ("snow ☃", "must contain only Latin-1 characters"),
    ],
)
def test_rendered_header_values_are_checked_before_the_call(participants, worker, value, problem):
    done = run(
        worker, participants.url("/one"), {"tenant": value}, headers={"X-Tenant": "${input.tenant}"}
    )
    assert done.status == "compensated"
    assert done.error["message"].startswith(f"header X-Tenant {problem}")
    assert participants.received() == []
