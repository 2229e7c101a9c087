"""What `/logs/` keeps of a call (sagas/engine/call_log.py)."""

from sagas.engine.call_log import logged_body, logged_headers


def test_credentials_and_configured_names_are_redacted_in_any_case():
    headers = {
        "AUTHORIZATION": "Bearer a",
        "Cookie": "sid=1",
        "x-api-key": "k",
        "X-Saga-Callback-Token": "t",
        "X-Signature": "s",
        "X-Tenant": "acme",
    }

    logged = logged_headers(headers, ("x-SIGNATURE", ""))

    assert logged == {
        "AUTHORIZATION": "***",
        "Cookie": "***",
        "x-api-key": "***",
        "X-Saga-Callback-Token": "***",
        "X-Signature": "***",
        "X-Tenant": "acme",
    }
    assert headers["AUTHORIZATION"] == "Bearer a"  # the headers sent are left alone


def test_a_body_within_the_limit_is_its_parsed_value():
    assert logged_body({"a": 1}, b'{"a":1}', 7) == ({"a": 1}, False)
    assert logged_body("ok", b"ok", 4096) == ("ok", False)
    assert logged_body(None, b"", 0) == (None, False)
    assert logged_body(None, None, 10) == (None, False)


def test_a_longer_body_is_its_first_bytes_as_text_and_zero_keeps_none():
    assert logged_body({"a": 12345}, b'{"a":12345}', 5) == ('{"a":', True)
    assert logged_body({"a": 1}, b'{"a":1}', 0) == (None, True)


def test_a_cut_inside_a_utf8_character_drops_its_bytes():
    raw = "né".encode()  # é is two bytes: the cut falls inside it

    assert logged_body("né", raw, 2) == ("n", True)
