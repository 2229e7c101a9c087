"""Parallel groups (DESIGN §9.3) in the pure core: which member calls start, a member's
own retry schedule, the group's failure once no call is in flight, the concurrent undo of
the group before the earlier steps, pause, cancel, interruption and resume. No database,
no clock."""

from datetime import UTC, datetime, timedelta

import pytest

from sagas.engine.outcomes import CallResult
from sagas.engine.plan import plan_build, steps_flat, steps_initial
from sagas.engine.repair import Resume, resume_apply
from sagas.engine.transitions import (
    Call,
    SagaState,
    call_settle,
    call_start,
    calls_interrupted,
    decide,
    group_span,
    interruption_settle,
)
from sagas.errors import Invalid

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OK = CallResult("succeeded", 200, {"id": 1})
REJECTED = CallResult("permanent_error", 422, None, "HTTP 422: no")
BUSY = CallResult("retryable_error", 503, None, "HTTP 503", uncertain=True)
TIMED_OUT = CallResult("retryable_error", None, None, "timed out after 1 s", uncertain=True)


def spec(name, on_failure=None):
    step = {
        "name": name,
        "action": {"method": "POST", "url": f"http://p/{name}"},
        "compensation": {"method": "POST", "url": f"http://p/undo-{name}"},
        "retry": {"max_attempts": 2, "delay_seconds": 10, "backoff_multiplier": 1},
    }
    return step | ({"on_failure": on_failure} if on_failure else {})


def plan(on_failure=None):
    """a → g (x | y | z) → b; x's on_failure as given."""
    steps = [
        spec("a"),
        {"name": "g", "parallel": [spec("x", on_failure), spec("y"), spec("z")]},
        spec("b"),
    ]
    return plan_build(
        definition="d",
        steps=steps,
        retry_attempts=3,
        retry_delay=5,
        compensation_attempts=2,
        call_timeout=30,
    )


def new_state(p):
    return SagaState(
        status="pending",
        phase="action",
        current_step=0,
        steps=steps_initial([{"name": s.name, "group": s.group} for s in p.steps]),
        error=None,
        cause=None,
        cancel_requested=False,
        deadline_at=NOW + timedelta(minutes=5),
        next_attempt_at=None,
    )


def start_all(state, p, now=NOW):
    """Start every call decide names, as the executor does (several only for a group's
    members); return (state, calls)."""
    calls = []
    while True:
        state, call = decide(state, p, now)
        if call is None:
            return state, calls
        calls.append(call)
        state = call_start(state, call, now)
        if not state.steps[call.index].get("group"):
            return state, calls  # an ordinary step's call is the only one in flight


def settle(state, p, call, result, now=NOW):
    return call_settle(state, p, call, result, now, rand=0.0)


def at_group(p):
    """The saga with `a` done and the three members' calls in flight."""
    state, calls = start_all(new_state(p), p)
    state = settle(state, p, calls[0], OK)
    return start_all(state, p)


def test_a_group_is_flattened_with_its_members_marked():
    p = plan()
    assert [(s.name, s.group) for s in p.steps] == [
        ("a", None),
        ("x", "g"),
        ("y", "g"),
        ("z", "g"),
        ("b", None),
    ]
    state = new_state(p)
    assert [s.get("group") for s in state.steps] == [None, "g", "g", "g", None]
    assert group_span(state.steps, 2) == range(1, 4) and group_span(state.steps, 4) == range(4, 5)
    assert steps_flat([spec("a")]) == [spec("a")]  # no group: the very same list


def test_every_member_starts_together_and_the_group_succeeds_when_all_have():
    p = plan()
    state, calls = at_group(p)
    assert calls == [Call("action", 1, 1), Call("action", 2, 1), Call("action", 3, 1)]
    for call in calls[:2]:
        state = settle(state, p, call, OK)
        assert state.current_step == 1  # still at the group
    state = settle(state, p, calls[2], OK)
    assert state.current_step == 4
    state, call = decide(state, p, NOW)
    assert call == Call("action", 4, 1)


def test_a_member_retries_on_its_own_schedule_and_the_saga_is_due_then():
    p = plan()
    state, calls = at_group(p)
    state = settle(state, p, calls[1], BUSY)
    later = NOW + timedelta(seconds=10)
    assert state.steps[2]["due_at"] == later.isoformat()
    state, call = decide(state, p, NOW)
    assert call is None  # y waits; x and z are in flight
    state = settle(state, p, calls[0], OK)
    state = settle(state, p, calls[2], OK)
    state, call = decide(state, p, NOW)
    assert call is None and state.next_attempt_at == later
    state, call = decide(state, p, later)
    assert call == Call("action", 2, 2)


def test_a_failed_member_stops_its_siblings_and_the_group_is_undone_first():
    p = plan()
    state, calls = at_group(p)
    state = settle(state, p, calls[1], REJECTED)  # y rejected; x, z in flight
    assert state.phase == "action" and state.steps[2]["status"] == "failed"
    state, call = decide(state, p, NOW)
    assert call is None  # no compensation while a member's call is in flight
    state = settle(state, p, calls[0], OK)
    state = settle(state, p, calls[2], TIMED_OUT)  # would be retried: the group stopped
    state, undo = start_all(state, p)
    assert state.phase == "compensation" and state.error["step"] == "y"
    # x (succeeded) and z (uncertain) are undone together; y (certainly failed) is not.
    assert undo == [Call("compensation", 1, 1), Call("compensation", 3, 1)]
    state = settle(state, p, undo[0], OK)
    state, call = decide(state, p, NOW)
    assert call is None  # a is undone only once z's undo is done
    state = settle(state, p, undo[1], OK)
    state, call = decide(state, p, NOW)
    assert call == Call("compensation", 0, 1)
    state = settle(call_start(state, call, NOW), p, call, OK)
    state, call = decide(state, p, NOW)
    assert state.status == "compensated"
    assert [s["status"] for s in state.steps] == [
        "compensated",
        "compensated",
        "failed",
        "compensated",
        "skipped",
    ]


def test_a_sibling_waiting_for_a_retry_stops_there_when_a_member_fails():
    p = plan()
    state, calls = at_group(p)
    state = settle(state, p, calls[0], BUSY)  # x waits for a retry (uncertain)
    state = settle(state, p, calls[2], OK)
    state = settle(state, p, calls[1], REJECTED)
    assert state.phase == "compensation"
    state, undo = start_all(state, p)
    assert undo == [Call("compensation", 1, 1), Call("compensation", 3, 1)]
    assert state.steps[1]["attempts"] == 1  # never retried


def test_a_compensation_retry_of_a_member_waits_on_its_own_time():
    p = plan()
    state, calls = at_group(p)
    for call in calls[:2]:
        state = settle(state, p, call, OK)
    state = settle(state, p, calls[2], REJECTED)
    state, undo = start_all(state, p)
    state = settle(state, p, undo[0], BUSY)
    later = NOW + timedelta(seconds=10)
    assert state.steps[1]["due_at"] == later.isoformat()
    state = settle(state, p, undo[1], OK)
    state, call = decide(state, p, NOW)
    assert call is None and state.next_attempt_at == later
    state, call = decide(state, p, later)
    assert call == Call("compensation", 1, 2)


def test_a_member_on_failure_pause_pauses_once_siblings_in_flight_are_recorded():
    p = plan(on_failure="pause")
    state, calls = at_group(p)
    state = settle(state, p, calls[0], REJECTED)
    assert state.status == "running"
    state = settle(state, p, calls[1], OK)
    state = settle(state, p, calls[2], OK)
    state, call = decide(state, p, NOW)
    assert call is None and state.status == "paused" and state.error["step"] == "x"
    # A plain resume runs the failed member again, as its next run.
    resume_apply(state, Resume(), NOW)
    state, again = start_all(state, p)
    assert again == [Call("action", 1, 1)] and state.steps[1]["run"] == 2


def test_an_operator_pause_starts_no_member_and_waits_for_the_calls_in_flight():
    p = plan()
    state, calls = at_group(p)
    state = settle(state, p, calls[0], BUSY)
    state.pause_request = {"actor": "internal", "key_id": "k", "reason": ""}
    state, call = decide(state, p, NOW + timedelta(seconds=20))  # x is due: not started
    assert call is None and state.status == "running"
    state = settle(state, p, calls[1], OK)
    state = settle(state, p, calls[2], OK)
    state, call = decide(state, p, NOW)
    assert call is None and state.status == "paused"


def test_cancel_with_members_in_flight_undoes_what_they_did_once_recorded():
    p = plan()
    state, calls = at_group(p)
    state.cancel_requested = True
    state, call = decide(state, p, NOW)
    assert call is None and state.phase == "compensation"
    state = settle(state, p, calls[0], OK)
    state = settle(state, p, calls[1], REJECTED)
    state = settle(state, p, calls[2], OK)
    state, undo = start_all(state, p)
    assert undo == [Call("compensation", 1, 1), Call("compensation", 3, 1)]
    assert state.cause["code"] == "cancelled"


def test_every_member_call_left_in_flight_is_recovered_with_its_own_attempt():
    p = plan()
    state, calls = at_group(p)
    assert calls_interrupted(state) == calls
    for call in calls:
        state, _ = interruption_settle(state, p, call, NOW, 0.0, limit=3)
    state, again = start_all(state, p)
    assert again == calls  # each sent again, the same attempt (and so the same key)


def test_a_member_whose_compensation_fails_for_good_fails_the_saga_after_its_siblings():
    p = plan()
    state, calls = at_group(p)
    for call in calls[:2]:
        state = settle(state, p, call, OK)
    state = settle(state, p, calls[2], REJECTED)
    state, undo = start_all(state, p)
    state = settle(state, p, undo[0], REJECTED)  # x's undo: retried once (2 in all)
    later = NOW + timedelta(seconds=10)
    state, again = start_all(state, p, later)
    assert again == [Call("compensation", 1, 2)]
    state = settle(state, p, again[0], REJECTED, later)
    state, call = decide(state, p, later)
    assert call is None and state.status == "compensating"  # y's undo is still in flight
    state = settle(state, p, undo[1], OK)
    state, call = decide(state, p, NOW)
    assert call is None and state.status == "failed" and state.current_step == 1


def test_resume_skip_needs_exactly_one_failed_member_and_from_step_rewinds_the_group():
    p = plan(on_failure="pause")
    state, calls = at_group(p)
    state = settle(state, p, calls[0], REJECTED)
    state = settle(state, p, calls[1], OK)
    state = settle(state, p, calls[2], OK)
    skipped = state.copy()
    resume_apply(skipped, Resume(skip={"response": {"id": 7}}), NOW)
    assert skipped.current_step == 4 and skipped.steps[1]["response"] == {"id": 7}
    none_failed = state.copy()
    none_failed.steps[1]["status"] = "succeeded"
    with pytest.raises(Invalid):
        resume_apply(none_failed, Resume(skip={"response": None}), NOW)
    rewound = state.copy()
    resume_apply(rewound, Resume(from_step="y"), NOW)
    assert rewound.rewind_step == 1 and rewound.phase == "compensation"
    by_group = state.copy()
    resume_apply(by_group, Resume(from_step="g"), NOW)
    assert by_group.rewind_step == 1


def test_an_async_member_waits_without_a_call_and_times_out_as_an_uncertain_failure():
    steps = [{"name": "g", "parallel": [spec("x"), spec("y")]}]
    steps[0]["parallel"][0]["action"]["async"] = {"timeout_seconds": 60}
    p = plan_build(
        definition="d",
        steps=steps,
        retry_attempts=3,
        retry_delay=5,
        compensation_attempts=2,
        call_timeout=30,
    )
    state, calls = start_all(new_state(p), p)
    state = settle(state, p, calls[0], CallResult("succeeded", 202, {"accepted": True}))
    state = settle(state, p, calls[1], OK)
    state, call = decide(state, p, NOW)
    until = NOW + timedelta(seconds=60)
    assert call is None and state.steps[0]["status"] == "waiting"
    assert state.next_attempt_at == until  # released until its async timeout
    state, undo = start_all(state, p, until)
    assert state.phase == "compensation" and state.steps[0]["uncertain"]
    assert undo == [Call("compensation", 0, 1), Call("compensation", 1, 1)]
