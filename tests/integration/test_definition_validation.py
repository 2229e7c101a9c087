"""Every definition rule of DESIGN §3/§6a → 400 with a message at the offending field."""

import copy

import pytest
from django.test import override_settings

from tests.api_builders import call, definition, nested, post_definition, step

pytestmark = pytest.mark.django_db


def _set(body: dict, path: tuple, value) -> dict:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _error_at(errors, path: tuple):
    for key in path:
        errors = errors[str(key)]
    return errors


ACTION = ("steps", 0, "action")
RETRY = ("steps", 0, "retry")
CASES = {
    # name
    "name with spaces": (("name",), "Bad Name", ("name",)),
    "name upper case": (("name",), "Checkout", ("name",)),
    "name too long": (("name",), "a" * 101, ("name",)),
    "name with newline": (("name",), "checkout\n", ("name",)),
    "name empty": (("name",), "", ("name",)),
    "name not a string": (("name",), 12, ("name",)),
    "description too long": (("description",), "d" * 2001, ("description",)),
    "description with NUL-like control": (("description",), "a\x07b", ("description",)),
    # saga timeout (0, 604800]
    "saga timeout zero": (("timeout_seconds",), 0, ("timeout_seconds",)),
    "saga timeout too big": (("timeout_seconds",), 604800.5, ("timeout_seconds",)),
    "saga timeout a string": (("timeout_seconds",), "10", ("timeout_seconds",)),
    "saga timeout boolean": (("timeout_seconds",), True, ("timeout_seconds",)),
    # steps
    "steps empty": (("steps",), [], ("steps",)),
    "steps too many": (("steps",), [step(f"s{n}") for n in range(51)], ("steps",)),
    "steps an object": (("steps",), {"name": "x"}, ("steps",)),
    "step name invalid": (("steps", 0, "name"), "Reserve!", ("steps", 0, "name")),
    "step without action": (("steps", 0), {"name": "x"}, ("steps", 0, "action")),
    # calls
    "method unknown": ((*ACTION, "method"), "FETCH", (*ACTION, "method")),
    "method lower case": ((*ACTION, "method"), "post", (*ACTION, "method")),
    "url ftp": ((*ACTION, "url"), "ftp://participant.test/x", (*ACTION, "url")),
    "url without scheme": ((*ACTION, "url"), "participant.test/x", (*ACTION, "url")),
    "url without host": ((*ACTION, "url"), "http:///x", (*ACTION, "url")),
    "url with credentials": ((*ACTION, "url"), "http://u:p@participant.test/", (*ACTION, "url")),
    "url metadata address": ((*ACTION, "url"), "http://169.254.169.254/latest", (*ACTION, "url")),
    "url with space": ((*ACTION, "url"), "http://participant.test/a b", (*ACTION, "url")),
    "url bad port": ((*ACTION, "url"), "http://participant.test:99999/", (*ACTION, "url")),
    "url too long": ((*ACTION, "url"), "http://p.test/" + "a" * 2048, (*ACTION, "url")),
    "url templated scheme": ((*ACTION, "url"), "${input.url}", (*ACTION, "url")),
    "call timeout zero": ((*ACTION, "timeout_seconds"), 0, (*ACTION, "timeout_seconds")),
    "call timeout too big": ((*ACTION, "timeout_seconds"), 301, (*ACTION, "timeout_seconds")),
    "headers a list": ((*ACTION, "headers"), ["X-A"], (*ACTION, "headers")),
    "header name invalid": ((*ACTION, "headers"), {"Bad Header": "v"}, (*ACTION, "headers")),
    "header name with colon": ((*ACTION, "headers"), {"X-A:": "v"}, (*ACTION, "headers")),
    "header value a number": ((*ACTION, "headers"), {"X-A": 5}, (*ACTION, "headers")),
    "header value CRLF": ((*ACTION, "headers"), {"X-A": "a\r\nX-B: b"}, (*ACTION, "headers")),
    "header value not Latin-1": ((*ACTION, "headers"), {"X-A": "snow ☃"}, (*ACTION, "headers")),
    "header value too long": ((*ACTION, "headers"), {"X-A": "v" * 4097}, (*ACTION, "headers")),
    "too many headers": (
        (*ACTION, "headers"),
        {f"X-H{n}": "v" for n in range(51)},
        (*ACTION, "headers"),
    ),
    "body too deep": ((*ACTION, "body"), {"a": nested(20)}, (*ACTION, "body")),
    "body with NUL": ((*ACTION, "body"), {"a": "x\u0000y"}, (*ACTION, "body")),
    # retry ranges
    "max_attempts zero": ((*RETRY,), {"max_attempts": 0}, (*RETRY, "max_attempts")),
    "max_attempts 101": ((*RETRY,), {"max_attempts": 101}, (*RETRY, "max_attempts")),
    "max_attempts fractional": ((*RETRY,), {"max_attempts": 1.5}, (*RETRY, "max_attempts")),
    "max_attempts a string": ((*RETRY,), {"max_attempts": "3"}, (*RETRY, "max_attempts")),
    "delay negative": ((*RETRY,), {"delay_seconds": -1}, (*RETRY, "delay_seconds")),
    "delay too big": ((*RETRY,), {"delay_seconds": 3600.5}, (*RETRY, "delay_seconds")),
    "backoff below 1": ((*RETRY,), {"backoff_multiplier": 0.5}, (*RETRY, "backoff_multiplier")),
    "backoff above 10": ((*RETRY,), {"backoff_multiplier": 11}, (*RETRY, "backoff_multiplier")),
    "max delay too big": ((*RETRY,), {"max_delay_seconds": 86401}, (*RETRY, "max_delay_seconds")),
    "retry a number": ((*RETRY,), 3, (*RETRY,)),
    # templates
    "unknown template root": ((*ACTION, "body"), {"a": "${env.HOME}"}, (*ACTION, "body")),
    "unknown saga field": ((*ACTION, "url"), "http://p.test/${saga.secret}", (*ACTION, "url")),
    "unknown step": ((*ACTION, "body"), "${steps.nope.response}", (*ACTION, "body")),
    "step field unknown": ((*ACTION, "body"), "${steps.charge.body}", (*ACTION, "body")),
    "later step in action": ((*ACTION, "body"), "${steps.charge.response.x}", (*ACTION, "body")),
    "later step in header": (
        (*ACTION, "headers"),
        {"X-Charge": "${steps.charge.status_code}"},
        (*ACTION, "headers"),
    ),
    "empty placeholder": ((*ACTION, "body"), "${}", (*ACTION, "body")),
    "unterminated placeholder": ((*ACTION, "body"), "id ${input.order_id", (*ACTION, "body")),
    # unknown fields anywhere
    "unknown top-level field": (("owner",), "me", ("owner",)),
    "unknown step field": (("steps", 0, "when"), "always", ("steps", 0, "when")),
    "unknown call field": ((*ACTION, "query"), {}, (*ACTION, "query")),
    "unknown retry field": ((*RETRY,), {"jitter": True}, (*RETRY, "jitter")),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_invalid_definition_is_400_at_the_field(internal_api, case):
    path, value, error_path = CASES[case]
    body = _set(definition(), path, value)

    response = post_definition(internal_api, body)

    assert response.status_code == 400, response.json()
    payload = response.json()
    assert payload["code"] == "validation_error"
    messages = _error_at(payload["errors"], error_path)
    assert messages, payload


def test_duplicate_step_names_are_reported_at_the_second(internal_api):
    body = definition(steps=[step("same"), step("other"), step("same")])

    errors = post_definition(internal_api, body).json()["errors"]

    assert list(errors["steps"]) == ["2"]
    assert "Duplicate step name" in errors["steps"]["2"]["name"][0]


def test_non_object_body_is_400(internal_api):
    for raw in ([definition()], "checkout", 5, None):
        response = internal_api.post("/api/saga-definitions/", raw, format="json")
        assert response.status_code == 400, raw


def test_limits_are_inclusive(internal_api):
    body = definition(
        name="a" * 100,
        description="d" * 2000,
        timeout_seconds=604800,
        steps=[
            step(
                f"s{n}",
                call(timeout_seconds=300, headers={"X-A": "v" * 4096}),
                retry={
                    "max_attempts": 100,
                    "delay_seconds": 0,
                    "backoff_multiplier": 10,
                    "max_delay_seconds": 86400,
                },
            )
            for n in range(50)
        ],
    )
    body["steps"][0]["action"]["body"] = {"a": nested(19)}  # 20 levels with the object

    assert post_definition(internal_api, body).status_code == 201


@override_settings(SAGA_ALLOWED_HOSTS=["allowed.test"])
def test_host_outside_saga_allowed_hosts_is_400(internal_api):
    body = definition(steps=[step("a", call())])

    response = post_definition(internal_api, body)

    assert response.status_code == 400
    url_errors = response.json()["errors"]["steps"]["0"]["action"]["url"]
    assert "SAGA_ALLOWED_HOSTS" in url_errors[0]


RESERVED_HEADERS = (
    "Host",
    "content-length",
    "Transfer-Encoding",
    "CONNECTION",
    "Upgrade",
    "Idempotency-Key",
    "X-Saga-Id",
    "x-saga-anything",
)


@pytest.mark.parametrize("header", RESERVED_HEADERS)
@pytest.mark.parametrize("call_name", ["action", "compensation"])
def test_headers_the_orchestrator_sets_are_refused_naming_the_header(
    internal_api, header, call_name
):
    body = definition()
    body["steps"][0][call_name]["headers"] = {"X-Tenant": "t", header: "evil"}

    response = post_definition(internal_api, body)

    assert response.status_code == 400, response.json()
    messages = response.json()["errors"]["steps"]["0"][call_name]["headers"]
    assert header in messages[0]


@pytest.mark.parametrize("index", ["²", "١", "1²"])
def test_a_list_index_in_other_digits_than_0_9_is_refused(internal_api, index):
    body = definition()
    body["steps"][0]["action"]["body"] = {"item": f"${{input.items.{index}}}"}

    response = post_definition(internal_api, body)

    assert response.status_code == 400, response.json()
    messages = response.json()["errors"]["steps"]["0"]["action"]["body"]
    assert "digits 0-9" in messages[0]
