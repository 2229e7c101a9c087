"""Who a request is counted as: key hash or client IP (pure parts of sagas/api/throttling.py)."""

import pytest

from sagas.api.throttling import (
    Window,
    _LocalWindows,
    client_ip,
    ip_bucket,
    key_fingerprint,
    parse_ip,
    parse_networks,
    rate_limit_bucket,
)

PROXIES = parse_networks(("10.0.0.0/8", "192.168.1.1", "fd00::/8"))


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        # Not a trusted proxy: the socket peer, whatever X-Forwarded-For claims.
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),
        ("203.0.113.9", "", "203.0.113.9"),
        # A trusted proxy: the right-most hop that is not a trusted proxy.
        ("10.1.1.1", "198.51.100.7", "198.51.100.7"),
        ("10.1.1.1", "6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the client wrote 6.6.6.6
        ("10.1.1.1", "198.51.100.7, 192.168.1.1", "198.51.100.7"),  # two proxies
        ("10.1.1.1", "198.51.100.7,10.2.2.2 ,", "198.51.100.7"),
        ("10.1.1.1", "[2001:db8::1]:4711, 10.2.2.2", "2001:db8::1"),
        ("10.1.1.1", "198.51.100.7:5555", "198.51.100.7"),
        # Only proxies, or nothing: the outermost proxy we know.
        ("10.1.1.1", "", "10.1.1.1"),
        ("10.1.1.1", "10.3.3.3, 10.2.2.2", "10.3.3.3"),
        # Garbage where the proxy should have written an address: stop at the proxy.
        ("10.1.1.1", "198.51.100.7, not-an-ip", "10.1.1.1"),
        # IPv4-mapped peers are the IPv4 address.
        ("::ffff:10.1.1.1", "198.51.100.8", "198.51.100.8"),
        ("fd00::5", "2001:db8::9", "2001:db8::9"),
        ("", "1.2.3.4", "unknown"),
        ("unix-socket", "1.2.3.4", "unix-socket"),
    ],
)
def test_client_ip(remote, forwarded, expected):
    assert client_ip(remote_addr=remote, forwarded_for=forwarded, trusted=PROXIES) == expected


def test_without_trusted_proxies_forwarded_for_is_ignored():
    assert client_ip(remote_addr="10.1.1.1", forwarded_for="1.1.1.1", trusted=()) == "10.1.1.1"


def test_parse_ip_forms():
    assert str(parse_ip(" 1.2.3.4 ")) == "1.2.3.4"
    assert str(parse_ip("[::1]:80")) == "::1"
    assert str(parse_ip("::ffff:1.2.3.4")) == "1.2.3.4"
    assert parse_ip("nope") is None


def test_ipv6_clients_are_counted_per_slash_64():
    assert ip_bucket("2001:db8:1:2:aaaa::1") == ip_bucket("2001:db8:1:2:bbbb::2")
    assert ip_bucket("2001:db8:1:2::1") != ip_bucket("2001:db8:1:3::1")
    assert ip_bucket("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert ip_bucket("203.0.113.9") == "203.0.113.9"


def test_known_key_is_counted_by_a_keyed_hash_never_the_key():
    bucket = rate_limit_bucket(api_key="k-123", key_known=True, ip="1.2.3.4", secret="s")
    assert bucket == "key:" + key_fingerprint(key="k-123", secret="s")
    assert "k-123" not in bucket
    assert len(bucket) == len("key:") + 32
    assert key_fingerprint(key="k-123", secret="other") != key_fingerprint(key="k-123", secret="s")


@pytest.mark.parametrize("key", [None, "", "guess"])
def test_missing_or_unknown_key_is_counted_per_ip(key):
    bucket = rate_limit_bucket(api_key=key, key_known=False, ip="1.2.3.4", secret="s")
    assert bucket == "ip:1.2.3.4"


def test_two_keys_have_two_buckets():
    a = rate_limit_bucket(api_key="a", key_known=True, ip="1.2.3.4", secret="s")
    b = rate_limit_bucket(api_key="b", key_known=True, ip="1.2.3.4", secret="s")
    assert a != b


def test_window_headers_count_this_request():
    assert Window(limit=3, count=1, reset_seconds=59.2).headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "2",
        "X-RateLimit-Reset": "60",
    }
    assert Window(limit=3, count=3, reset_seconds=0.2).headers()["X-RateLimit-Remaining"] == "0"


def test_over_the_limit_window_carries_retry_after():
    window = Window(limit=3, count=4, reset_seconds=0.2)
    assert not window.allowed
    assert window.headers()["X-RateLimit-Remaining"] == "0"
    assert window.headers()["Retry-After"] == "1"  # never 0 while the window runs


def test_local_windows_count_and_reset(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("sagas.api.throttling.time.monotonic", lambda: now[0])
    windows = _LocalWindows()
    counts = [windows.hit(bucket="b", limit=2, window=10).count for _ in range(3)]
    assert counts == [1, 2, 3]
    assert windows.hit(bucket="other", limit=2, window=10).count == 1
    now[0] += 10
    fresh = windows.hit(bucket="b", limit=2, window=10)
    assert (fresh.count, fresh.reset_seconds) == (1, 10)
