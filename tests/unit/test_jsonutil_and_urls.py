"""Pure helpers: JSON depth/storability, canonical hashing, static URL checks."""

import pytest

from sagas.api.serializers import url_static_problem
from sagas.jsonutil import canonical_json, content_hash, json_depth, json_value_problem


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("s", 0), ({}, 1), ([], 1), ({"a": [1]}, 2), ([[[[]]]], 4)],
)
def test_json_depth(value, depth):
    assert json_depth(value) == depth


def test_json_depth_of_a_very_deep_value_does_not_recurse():
    value: list = []
    for _ in range(100000):
        value = [value]

    assert json_depth(value) == 100001


@pytest.mark.parametrize(
    "value", [{"a": "x\x00"}, {"a\x00": 1}, ["\ud800"], {"n": float("inf")}, {"n": float("nan")}]
)
def test_unstorable_values(value):
    assert json_value_problem(value)


def test_storable_value():
    assert json_value_problem({"a": ["ünïcode", 1.5, None, True, {"b": "c"}]}) is None


def test_canonical_json_ignores_key_order():
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == '{"a":{"c":3,"d":2},"b":1}'
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})


@pytest.mark.parametrize(
    "url",
    [
        "http://inventory:8000/reservations/${steps.reserve.response.id}",
        "https://${input.host}/x",
        "http://${input.host}:${input.port}/x",
        "HTTP://svc/x?q=${input.q}",
    ],
)
def test_templated_urls_that_pass(settings, url):
    settings.SAGA_ALLOWED_HOSTS = []

    assert url_static_problem(url) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("${input.url}", "http"),
        ("ftp://x/", "http"),
        ("http://169.254.169.254/${input.a}", "metadata"),
        ("http://other/${input.a}", "SAGA_ALLOWED_HOSTS"),
        ("http://svc/a b", "whitespace"),
    ],
)
def test_templated_urls_that_fail(settings, url, message):
    settings.SAGA_ALLOWED_HOSTS = ["svc"]

    assert message in url_static_problem(url)
