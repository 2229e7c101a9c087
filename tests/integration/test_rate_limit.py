"""Rate limiting against the real Redis (REDIS_HOST/REDIS_DB of the run), in process.

Every test gets fresh API keys and client IPs, so its windows are its own even when other
tests run at the same time on the same Redis database."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.test import Client, override_settings
from django.urls import get_resolver

from sagas import redis_client as redis_client_module
from sagas.api import throttling
from sagas.redis_client import redis_client
from tests.security_helpers import captured_logs, security_settings, throwaway_redis, unique_ip
from tests.support import wait_until


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    """Each test starts with Redis believed healthy and empty in-process windows."""
    monkeypatch.setattr(throttling._warnings, "warned_at", None)
    redis_client_module.breaker_for.cache_clear()
    monkeypatch.setattr(throttling, "_local", throttling._LocalWindows())


def get(path, key=None, ip=None, **extra):
    headers = {"X-API-Key": key} if key is not None else {}
    return Client().get(path, headers=headers, REMOTE_ADDR=ip or unique_ip(), **extra)


def test_redis_is_the_counter_here():
    assert redis_client() is not None, "the suite runs with REDIS_HOST set"


def test_concurrent_requests_let_exactly_the_limit_through():
    limit, total = 12, 48
    with security_settings(limit=limit) as s:

        def one(_):
            return get("/api/limited/", key=s.client_key).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            codes = list(pool.map(one, range(total)))
    assert codes.count(200) == limit
    assert codes.count(429) == total - limit


def test_concurrent_unknown_key_requests_are_limited_per_ip():
    limit, total, ip = 5, 20, unique_ip()
    with security_settings(limit=limit):

        def one(i):
            return get("/api/limited/", key=f"guess-{i}", ip=ip).status_code

        with ThreadPoolExecutor(max_workers=10) as pool:
            codes = list(pool.map(one, range(total)))
    assert codes.count(401) == limit
    assert codes.count(429) == total - limit


def test_headers_on_every_limited_response():
    with security_settings(limit=3, window=60) as s:
        responses = [get("/api/limited/", key=s.client_key) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    for response in responses:
        assert response["X-RateLimit-Limit"] == "3"
        assert 1 <= int(response["X-RateLimit-Reset"]) <= 60
    refused = responses[-1]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["Content-Type"] == "application/json"
    body = refused.json()
    assert body["code"] == "rate_limited"
    assert body["request_id"] == refused["X-Request-ID"]
    assert "Retry-After" not in responses[0]


def test_unknown_key_401s_count_against_the_ip_and_carry_headers():
    ip = unique_ip()
    with security_settings(limit=3) as s:
        guesses = [get("/api/limited/", key="wrong", ip=ip) for _ in range(3)]
        over = get("/api/limited/", key="another-guess", ip=ip)
        missing = get("/api/limited/", ip=ip)
        other_ip = get("/api/limited/", key="wrong")
        keyed = get("/api/limited/", key=s.client_key, ip=ip)
    assert [r.status_code for r in guesses] == [401, 401, 401]
    assert [r["X-RateLimit-Remaining"] for r in guesses] == ["2", "1", "0"]
    assert guesses[0].json()["code"] == "authentication_failed"
    assert over.status_code == 429 and over.json()["code"] == "rate_limited"
    assert missing.status_code == 429  # no key: the same IP window
    assert other_ip.status_code == 401  # another address has its own window
    assert keyed.status_code == 200  # a known key is counted per key


def test_missing_key_is_401_and_counted():
    ip = unique_ip()
    with security_settings(limit=2):
        codes = [get("/api/limited/", ip=ip).status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_forbidden_role_403_counts_against_the_key():
    with security_settings(limit=2) as s:
        first = get("/api/internal/", key=s.client_key)
        second = get("/api/limited/", key=s.client_key)
        third = get("/api/internal/", key=s.client_key)
        internal = get("/api/internal/", key=s.internal_key)
    assert first.status_code == 403 and first["X-RateLimit-Remaining"] == "1"
    assert second.status_code == 200 and second["X-RateLimit-Remaining"] == "0"
    assert third.status_code == 429
    assert internal.status_code == 200  # the internal key has its own window


def test_each_request_is_counted_once():
    """A 405 and a 400 pass the throttle once, not again in the exception handler."""
    with security_settings(limit=10) as s:
        client = Client(headers={"X-API-Key": s.client_key}, REMOTE_ADDR=unique_ip())
        bad_method = client.delete("/api/limited/")
        bad_json = client.post("/api/limited/", "{", content_type="application/json")
        ok = client.get("/api/limited/")
    assert bad_method.status_code == 405 and bad_method["X-RateLimit-Remaining"] == "9"
    assert bad_json.status_code == 400 and bad_json["X-RateLimit-Remaining"] == "8"
    assert ok["X-RateLimit-Remaining"] == "7"


@pytest.mark.parametrize(
    "path", ["/open/", "/open-default/", "/api/schema/", "/api/docs/", "/api/redoc/"]
)
def test_open_endpoints_are_not_limited(path):
    ip = unique_ip()
    with security_settings(limit=2):
        responses = [get(path, ip=ip) for _ in range(5)]
        responses += [get(path, key="wrong", ip=ip) for _ in range(2)]
    assert {r.status_code for r in responses} == {200}
    assert all("X-RateLimit-Limit" not in r for r in responses)


def test_open_endpoints_do_not_use_up_the_window():
    ip = unique_ip()
    with security_settings(limit=2):
        for _ in range(5):
            get("/open/", ip=ip)
        assert get("/api/limited/", ip=ip)["X-RateLimit-Remaining"] == "1"


def test_window_resets():
    with security_settings(limit=2, window=1) as s:
        codes = [get("/api/limited/", key=s.client_key).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        started = time.monotonic()
        fresh = wait_until(
            lambda: (r := get("/api/limited/", key=s.client_key)).status_code == 200 and r,
            timeout=3,
        )
    assert time.monotonic() - started <= 1.5
    assert fresh["X-RateLimit-Remaining"] == "1"


def test_redis_holds_a_hash_of_the_key_with_a_ttl_never_the_key():
    client = redis_client()
    with security_settings(limit=5, window=30) as s:
        get("/api/limited/", key=s.client_key)
        fingerprint = throttling.key_fingerprint(key=s.client_key, secret=s_secret())
    redis_key = f"{throttling.REDIS_KEY_PREFIX}key:{fingerprint}"
    assert client.get(redis_key) == b"1"
    assert 0 < client.pttl(redis_key) <= 30_000
    names = [name.decode() for name in client.scan_iter(f"{throttling.REDIS_KEY_PREFIX}*")]
    assert not any(s.client_key in name for name in names)


def s_secret() -> str:
    from django.conf import settings

    return settings.SECRET_KEY


def test_client_ip_from_trusted_proxy_forwarded_for():
    proxy, client, other = unique_ip(), unique_ip(), unique_ip()
    with security_settings(limit=1, TRUSTED_PROXIES=[proxy]):
        first = get("/api/limited/", ip=proxy, HTTP_X_FORWARDED_FOR=client)
        # What the client prepends itself is ignored: still `client`, now over the limit.
        spoofing = get("/api/limited/", ip=proxy, HTTP_X_FORWARDED_FOR=f"{unique_ip()}, {client}")
        neighbour = get("/api/limited/", ip=proxy, HTTP_X_FORWARDED_FOR=other)
    assert first.status_code == 401
    assert spoofing.status_code == 429
    assert neighbour.status_code == 401  # another client behind the same proxy


def test_forwarded_for_is_ignored_from_untrusted_peers():
    ip = unique_ip()
    with security_settings(limit=1, TRUSTED_PROXIES=["10.255.255.1"]):
        first = get("/api/limited/", ip=ip, HTTP_X_FORWARDED_FOR=unique_ip())
        spoofed = get("/api/limited/", ip=ip, HTTP_X_FORWARDED_FOR=unique_ip())
    assert (first.status_code, spoofed.status_code) == (401, 429)


def test_embedded_default_counts_in_process():
    limit, total = 7, 30
    with security_settings(limit=limit, REDIS_HOST="") as s:
        assert redis_client() is None

        def one(_):
            return get("/api/limited/", key=s.client_key).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(one, range(total)))
        refused = get("/api/limited/", key=s.client_key)
    assert codes.count(200) == limit and codes.count(429) == total - limit
    assert refused["X-RateLimit-Limit"] == str(limit) and "Retry-After" in refused


def warnings_of(records):
    return [r for r in records if r.name == "sagas.ratelimit" and r.levelno == logging.WARNING]


@pytest.fixture
def no_recent_warning(monkeypatch):
    """The warning is once per interval per process: another test's warning in this
    process must not silence this test's first one."""
    monkeypatch.setattr(throttling._warnings, "warned_at", None)


def test_redis_down_requests_pass_with_one_warning_per_interval(monkeypatch, no_recent_warning):
    monkeypatch.setattr(redis_client_module, "RETRY_SECONDS", 0.0)
    with throwaway_redis() as (redis_process, port), captured_logs() as (_, records):
        with security_settings(limit=2, REDIS_HOST="127.0.0.1", REDIS_PORT=port, REDIS_DB=0) as s:
            counted = get("/api/limited/", key=s.client_key)
            assert counted["X-RateLimit-Remaining"] == "1"
            assert not throttling.rate_limit_degraded()
            redis_process.kill()
            redis_process.wait(timeout=10)

            burst = [get("/api/limited/", key=s.client_key) for _ in range(10)]
            assert {r.status_code for r in burst} == {200}  # availability first
            assert all("X-RateLimit-Limit" not in r for r in burst)
            assert throttling.rate_limit_degraded()
            assert len(warnings_of(records)) == 1

            # The next interval, without waiting for it (a sleep races a slow burst).
            warnings = throttling._warnings
            monkeypatch.setattr(warnings, "warned_at", warnings.warned_at - warnings.interval)
            more = [get("/api/limited/", key=s.client_key) for _ in range(5)]
            assert {r.status_code for r in more} == {200}
            assert len(warnings_of(records)) == 2
    assert "Redis unreachable" in warnings_of(records)[0].getMessage()


def test_a_breaker_another_user_opened_still_warns_that_requests_pass_uncounted(
    monkeypatch, no_recent_warning
):
    monkeypatch.setattr(redis_client_module, "RETRY_SECONDS", 30.0)
    with throwaway_redis() as (_, port):
        with security_settings(limit=5, REDIS_HOST="127.0.0.1", REDIS_PORT=port, REDIS_DB=0) as s:
            breaker = redis_client_module.redis_breaker()
            breaker.failed(redis.ConnectionError("refused"))  # the figures' flusher, say
            try:
                with captured_logs() as (_, records):
                    codes = [get("/api/limited/", key=s.client_key).status_code for _ in range(3)]
            finally:
                breaker.succeeded()
    assert set(codes) == {200}
    assert len(warnings_of(records)) == 1
    assert warnings_of(records)[0].error == "ConnectionError"


def test_redis_down_skips_redis_for_a_moment_then_recovers(monkeypatch, no_recent_warning):
    monkeypatch.setattr(redis_client_module, "RETRY_SECONDS", 0.3)
    with throwaway_redis() as (first, port):
        with security_settings(limit=5, REDIS_HOST="127.0.0.1", REDIS_PORT=port, REDIS_DB=0) as s:
            first.kill()
            first.wait(timeout=10)
            with captured_logs() as (_, records):
                codes = [get("/api/limited/", key=s.client_key).status_code for _ in range(20)]
            assert set(codes) == {200} and len(warnings_of(records)) == 1
            assert throttling.rate_limit_degraded()
            with throwaway_redis(port=port):
                recovered = wait_until(
                    lambda: (
                        "X-RateLimit-Limit" in (r := get("/api/limited/", key=s.client_key)) and r
                    ),
                    timeout=5,
                )
                assert recovered["X-RateLimit-Remaining"] == "4"
                assert not throttling.rate_limit_degraded()


@override_settings(REDIS_HOST="127.0.0.1", REDIS_PORT=1)
def test_degraded_flag_for_health_checks():
    assert not throttling.rate_limit_degraded()
    assert throttling.window_hit(bucket="ip:x", limit=1, window=1) is None
    assert throttling.rate_limit_degraded()


@pytest.mark.django_db
def test_metrics_limits_missing_and_unknown_keys_per_ip_but_not_scrapes():
    limit, ip = 3, unique_ip()
    with (
        security_settings(limit=limit) as s,
        override_settings(ROOT_URLCONF="saga_orchestrator.urls"),
    ):
        guesses = [get("/metrics", key=f"guess-{i}", ip=ip) for i in range(limit + 3)]
        missing = get("/metrics", ip=ip)
        scrapes = [get("/metrics", key=s.internal_key, ip=ip) for _ in range(limit + 3)]

    assert [r.status_code for r in guesses] == [401] * limit + [429] * 3
    assert "Retry-After" in guesses[-1] and guesses[-1]["X-RateLimit-Limit"] == str(limit)
    assert missing.status_code == 429
    assert {r.status_code for r in scrapes} == {200}
    assert all("X-RateLimit-Limit" not in r for r in scrapes)


def _views(patterns):
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            yield from _views(pattern.url_patterns)
        else:
            yield str(pattern.pattern), getattr(pattern.callback, "view_class", None)


def test_every_keyed_endpoint_has_a_rate_limit():
    """A view that asks for a key limits missing and unknown ones (DESIGN §6a)."""
    keyed = {
        route: view
        for route, view in _views(get_resolver("saga_orchestrator.urls").url_patterns)
        if view is not None and getattr(view, "authentication_classes", None)
    }
    assert "metrics" in keyed and "sagas/" in keyed
    assert [route for route, view in keyed.items() if not view.throttle_classes] == []
