import json
from urllib.parse import urlsplit

import pytest

from sagas.engine.connections import PinnedConnection, PinnedTLSConnection
from sagas.engine.outcomes import classify
from sagas.engine.participants import (
    TEXT_MAX_BYTES,
    connect_target,
    error_text,
    parse_body,
    status_error,
)
from sagas.jsonutil import json_value_problem


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, ("succeeded", False)),
        (201, ("succeeded", False)),
        (204, ("succeeded", False)),
        (408, ("retryable_error", False)),
        (425, ("retryable_error", False)),
        (429, ("retryable_error", False)),
        (500, ("retryable_error", True)),
        (503, ("retryable_error", True)),
        (599, ("retryable_error", True)),
        (301, ("permanent_error", False)),
        (302, ("permanent_error", False)),
        (400, ("permanent_error", False)),
        (404, ("permanent_error", False)),
        (409, ("permanent_error", False)),
        (422, ("permanent_error", False)),
    ],
)
def test_classify_statuses(status, expected):
    assert classify(status) == expected


@pytest.mark.parametrize("failure", ["timeout", "connection"])
def test_failures_after_sending_are_retryable_and_uncertain(failure):
    assert classify(None, failure) == ("retryable_error", True)


def test_a_failure_before_sending_is_retryable_and_certain():
    assert classify(None, "not_sent") == ("retryable_error", False)


def test_error_text_prefers_the_participants_message():
    assert error_text({"error": "card declined"}) == "card declined"
    assert error_text({"error": {"message": "nested"}}) == "nested"
    assert error_text({"message": "m"}) == "m"
    assert error_text({"detail": "d"}) == "d"
    assert error_text({"other": 1}) == '{"other":1}'
    assert error_text("plain text") == "plain text"
    assert error_text(None) == ""
    assert len(error_text("x" * 5000)) == 300


def test_status_error_messages():
    assert status_error(422, {"error": "card declined"}, None) == "HTTP 422: card declined"
    assert status_error(503, None, None) == "HTTP 503"
    assert status_error(302, None, "http://x/") == "HTTP 302: redirect to http://x/ not followed"


def test_parse_body_json_text_and_empty():
    assert parse_body(b'{"a": [1, 2]}') == {"a": [1, 2]}
    assert parse_body(b"ok") == "ok"
    assert parse_body(b"") is None


def test_parse_body_keeps_storable_json_as_json():
    assert parse_body(b'{"s": "caf\\u00e9", "n": 1.5, "deep": [[[]]]}') == {
        "s": "café",
        "n": 1.5,
        "deep": [[[]]],
    }
    twenty_deep = b"[" * 20 + b"]" * 20  # the input depth limit itself
    assert parse_body(twenty_deep) == json.loads(twenty_deep)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": NaN}',
        b'{"id": Infinity}',
        b"[-Infinity]",
        b'{"id": 1e999}',
        b'{"s": "a\\u0000b"}',
        b'{"a\\u0000": 1}',
        b'{"s": "\\ud800"}',
        b'{"\\udfff": 1}',
        b"[" * 21 + b"]" * 21,
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"s": "\xff"}',
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity",
        "overflow",
        "nul-in-string",
        "nul-in-key",
        "lone-surrogate",
        "lone-surrogate-key",
        "depth-21",
        "100k-open",
        "100k-deep",
        "invalid-utf8",
    ],
)
def test_bodies_postgresql_cannot_store_as_json_are_kept_as_storable_text(raw):
    kept = parse_body(raw)
    assert isinstance(kept, str)
    assert json_value_problem(kept) is None  # no NUL, no lone surrogate
    assert len(kept.encode()) <= TEXT_MAX_BYTES + 3  # one replacement char at the cut
    assert kept[:8] == raw[:8].decode("utf-8", errors="replace")


def test_binary_and_nul_bytes_become_replacement_characters():
    kept = parse_body(bytes(range(256)))
    assert "\x00" not in kept and kept[0] == "\ufffd" and kept[1:3] == "\x01\x02"
    assert json_value_problem(kept) is None
    assert parse_body(b"ok\x00") == "ok\ufffd"


def test_long_text_is_cut_at_64_kib():
    kept = parse_body(b"x" * (TEXT_MAX_BYTES + 10))
    assert kept == "x" * TEXT_MAX_BYTES


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://[fd00::5]/x", ("fd00::5", 80)),
        ("http://[::1]/", ("::1", 80)),
        ("https://[::1]/x", ("::1", 443)),
        ("http://[::1]:8080/x", ("::1", 8080)),
        ("http://[FD00::A]:81/", ("fd00::a", 81)),
        ("http://Inventory.svc:8000/x", ("inventory.svc", 8000)),
        ("https://pay.example/x", ("pay.example", 443)),
        ("http://10.0.0.7/x", ("10.0.0.7", 80)),
    ],
)
def test_connect_target_keeps_ipv6_literals_whole(url, target):
    assert connect_target(urlsplit(url)) == target


@pytest.mark.parametrize(
    ("url", "connection"),
    [
        ("http://[fd00::5]/x", PinnedConnection),
        ("https://[::1]/x", PinnedTLSConnection),
        ("http://[::1]:8080/x", PinnedConnection),
    ],
)
def test_a_portless_ipv6_literal_is_not_re_split_by_http_client(url, connection):
    host, port = connect_target(urlsplit(url))
    conn = connection(host, port, resolve=lambda host, port: [])
    assert (conn.host, conn.port) == (host, port)  # not ("fd00:", 5) or ("::", 1)
