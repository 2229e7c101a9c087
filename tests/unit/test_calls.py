from sagas.engine.calls import call_prepare
from sagas.engine.outcomes import CallResult
from sagas.engine.participants import ParticipantRequest
from sagas.engine.plan import plan_build, steps_initial
from sagas.engine.trace_context import trace_new
from sagas.engine.transitions import Call


def make_plan(action, compensation=None):
    step = {"name": "pay", "action": action, "compensation": compensation}
    return plan_build(
        definition="d",
        steps=[step],
        retry_attempts=3,
        retry_delay=1,
        compensation_attempts=3,
        call_timeout=30,
    )


def prepare(plan, call=Call("action", 0, 1), allowed=(), saga_input=None, trace=None):
    return call_prepare(
        plan=plan,
        call=call,
        saga_id="s-1",
        saga_input=saga_input or {"amount": 5, "t": "x"},
        steps=steps_initial([{"name": "pay"}]),
        request_id="rid",
        trace=trace or trace_new(),
        allowed_hosts=list(allowed),
    )


def test_the_request_carries_the_contract_headers_and_wins_over_definition_headers():
    plan = make_plan(
        {
            "method": "post",
            "url": "http://pay.local/charge",
            "headers": {
                "X-Tenant": "${input.t}",
                "idempotency-key": "forged",
                # Refused at registration since; a version stored before loses them.
                "Host": "other.local",
                "Content-Length": "0",
                "Transfer-Encoding": "chunked",
                "x-saga-extra": "forged",
            },
            "body": {"amount": "${input.amount}"},
            "timeout_seconds": 2.5,
        }
    )
    trace = trace_new()
    request = prepare(plan, trace=trace)
    assert isinstance(request, ParticipantRequest)
    assert request.method == "POST" and request.timeout == 2.5
    assert request.body == b'{"amount":5}'
    traceparent = request.headers.pop("traceparent")  # a new parent id per call
    assert traceparent.startswith(f"00-{trace.trace_id}-") and traceparent.endswith("-01")
    assert request.headers == {
        "X-Tenant": "x",
        "Content-Type": "application/json",
        "Idempotency-Key": "s-1:pay:action",
        "X-Saga-Id": "s-1",
        "X-Saga-Step": "pay",
        "X-Request-ID": "rid",
    }


def test_compensation_key_and_default_timeout_and_no_body():
    plan = make_plan(
        {"method": "POST", "url": "http://a/"}, {"method": "DELETE", "url": "http://a/x"}
    )
    request = prepare(plan, Call("compensation", 0, 1))
    assert request.headers["Idempotency-Key"] == "s-1:pay:compensation"
    assert request.timeout == 30 and request.body is None


def test_a_forbidden_host_is_a_permanent_failure():
    result = prepare(make_plan({"method": "GET", "url": "http://evil.test/"}), allowed=["ok.test"])
    assert isinstance(result, CallResult) and result.outcome == "permanent_error"
    assert result.error == "URL host evil.test is not in SAGA_ALLOWED_HOSTS"
    metadata = prepare(make_plan({"method": "GET", "url": "http://169.254.169.254/"}))
    assert "metadata" in metadata.error


def test_a_header_template_with_a_line_break_is_a_permanent_failure():
    plan = make_plan({"method": "GET", "url": "http://a/", "headers": {"X-T": "${input.t}"}})
    result = prepare(plan, saga_input={"t": "a\nb"})
    assert isinstance(result, CallResult) and "line break" in result.error


def test_an_unresolved_url_placeholder_is_a_permanent_failure_naming_it():
    result = prepare(make_plan({"method": "GET", "url": "http://a/${input.nope}"}))
    assert result.outcome == "permanent_error" and "input.nope" in result.error
