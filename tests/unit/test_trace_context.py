"""Parsing and formatting of W3C Trace Context headers (sagas/engine/trace_context.py),
and the trace headers of a call."""

import pytest

from sagas.engine.participants import ParticipantRequest
from sagas.engine.trace_context import (
    MAX_TRACESTATE_LENGTH,
    TRACEPARENT,
    TraceContext,
    call_traceparent,
    trace_incoming,
    trace_new,
    trace_stored,
    traceparent_parse,
    tracestate_parse,
)
from tests.unit.test_calls import make_plan, prepare

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_a_valid_traceparent_is_read_into_its_parts():
    assert traceparent_parse(VALID) == TraceContext(TRACE_ID, PARENT_ID, "01")
    assert traceparent_parse(f" {VALID}\t") == TraceContext(TRACE_ID, PARENT_ID, "01")
    assert traceparent_parse(f"00-{TRACE_ID}-{PARENT_ID}-00").flags == "00"
    assert traceparent_parse(f"00-{TRACE_ID}-{PARENT_ID}-ff").flags == "ff"


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        f"00-{'0' * 32}-{PARENT_ID}-01",  # trace id all zeros
        f"00-{TRACE_ID}-{'0' * 16}-01",  # parent id all zeros
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is invalid
        f"01-{TRACE_ID}-{PARENT_ID}-01",  # a later version: not read
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # upper-case hex
        f"00-{TRACE_ID}-{PARENT_ID.upper()}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-0A",
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",  # short trace id
        f"00-{TRACE_ID}0-{PARENT_ID}-01",  # long trace id
        f"00-{TRACE_ID}-{PARENT_ID[:-1]}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-1",  # one-digit flags
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 ends at the flags
        f"00_{TRACE_ID}_{PARENT_ID}_01",
        f"00-{TRACE_ID[:-1]}g-{PARENT_ID}-01",  # not hex
        f"{VALID},{VALID}",  # the header twice (joined by the server)
    ],
)
def test_an_invalid_traceparent_is_refused(value):
    assert traceparent_parse(value) is None


def test_tracestate_members_are_kept_in_order_without_spaces_or_empty_members():
    assert tracestate_parse("rojo=00f067aa0ba902b7") == "rojo=00f067aa0ba902b7"
    assert tracestate_parse(" congo=t61rcWkgMzE ,\t, rojo=00f0 ") == "congo=t61rcWkgMzE,rojo=00f0"
    assert tracestate_parse("fw529a3039@dt=value with space") == "fw529a3039@dt=value with space"
    assert tracestate_parse("a_b-c*d/e=x") == "a_b-c*d/e=x"
    assert tracestate_parse(None) == tracestate_parse("") == tracestate_parse(" , ") == ""


@pytest.mark.parametrize(
    "value",
    [
        "Rojo=1",  # keys are lower case
        "1abc=1",  # a simple key starts with a letter
        "rojo",  # no value
        "rojo=",  # an empty value
        "rojo=a=b",  # '=' in a value
        "rojo=a\tb",  # a tab in a value
        "rojo=\x7f",
        "rojo=caf\u00e9",  # not ASCII
        "rojo=1,rojo=2",  # a key twice
        "t@" + "s" * 15 + "=1",  # a system id over 14 characters
        "k" * 257 + "=1",  # a key over 256 characters
        "rojo=" + "v" * 257,  # a value over 256 characters
        ",".join(f"k{n}=v" for n in range(33)),  # over 32 members
    ],
)
def test_an_invalid_tracestate_is_dropped_whole(value):
    assert tracestate_parse(value) == ""


def test_a_tracestate_over_the_length_limit_is_dropped_whole():
    members = [f"k{n}={'v' * 40}" for n in range(12)]  # 12 × 44 characters + commas
    assert len(",".join(members)) > MAX_TRACESTATE_LENGTH
    assert tracestate_parse(",".join(members)) == ""
    assert tracestate_parse(",".join(members[:11])) == ",".join(members[:11])


def test_the_incoming_trace_is_kept_with_its_tracestate():
    trace = trace_incoming(VALID, "rojo=1, congo=2")
    assert trace == TraceContext(TRACE_ID, PARENT_ID, "01", "rojo=1,congo=2")
    assert trace.traceparent == VALID


def test_without_a_valid_traceparent_a_new_sampled_trace_is_started_and_tracestate_dropped():
    for traceparent in (None, "", f"00-{'0' * 32}-{PARENT_ID}-01"):
        trace = trace_incoming(traceparent, "rojo=1")
        assert trace.trace_id != TRACE_ID and trace.state == ""
        assert trace.flags == "01"
        assert traceparent_parse(trace.traceparent) == TraceContext(
            trace.trace_id, trace.parent_id, "01"
        )


def test_new_traces_are_random():
    ids = {trace_new().trace_id for _ in range(100)}
    assert len(ids) == 100


def test_a_call_traceparent_has_the_saga_trace_a_new_parent_id_and_its_flags():
    trace = TraceContext(TRACE_ID, PARENT_ID, "00", "rojo=1")
    values = [call_traceparent(trace) for _ in range(50)]
    assert all(TRACEPARENT.match(v) for v in values)
    parsed = [traceparent_parse(v) for v in values]
    assert {(p.trace_id, p.flags) for p in parsed} == {(TRACE_ID, "00")}
    assert len({p.parent_id for p in parsed}) == 50 and PARENT_ID not in parsed


def test_a_stored_trace_is_read_back_and_an_old_saga_uses_its_id():
    saga_hex = "6f1c0d9e8a7b4c3d2e1f0a9b8c7d6e5f"
    assert trace_stored(VALID, "rojo=1", saga_hex) == TraceContext(
        TRACE_ID, PARENT_ID, "01", "rojo=1"
    )
    old = trace_stored("", "", saga_hex)
    assert (old.trace_id, old.flags, old.state) == (saga_hex, "01", "")


def test_a_call_sends_the_trace_headers_and_they_win_over_the_definition():
    plan = make_plan(
        {
            "method": "post",
            "url": "http://pay.local/charge",
            "headers": {"TraceParent": "forged", "tracestate": "forged=1", "X-Tenant": "t"},
        }
    )
    trace = TraceContext(TRACE_ID, PARENT_ID, "01", "rojo=1")

    request = prepare(plan, allowed=["pay.local"], trace=trace)

    assert isinstance(request, ParticipantRequest)
    names = [name.lower() for name in request.headers]
    assert names.count("traceparent") == 1 and names.count("tracestate") == 1
    assert traceparent_parse(request.headers["traceparent"]).trace_id == TRACE_ID
    assert request.headers["tracestate"] == "rojo=1"
    assert request.headers["X-Tenant"] == "t"


def test_a_call_without_tracestate_sends_none():
    plan = make_plan({"method": "post", "url": "http://pay.local/charge"})
    request = prepare(plan, allowed=["pay.local"], trace=TraceContext(TRACE_ID, PARENT_ID, "01"))
    assert "tracestate" not in {name.lower() for name in request.headers}
    assert request.headers["traceparent"].startswith(f"00-{TRACE_ID}-")
