import pytest

from sagas.engine.participants import classify, error_text, parse_body, status_error


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
def test_timeouts_and_connection_errors_are_retryable_and_uncertain(failure):
    assert classify(None, failure) == ("retryable_error", True)


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
