"""Asynchronous steps' pure rules (DESIGN §9.4): the token, what a callback may do
(callbacks.py), and the transitions of a waiting step — 202, callback, async timeout,
cancel, deadline, pause and resume. No database, no clock."""

from datetime import timedelta

import pytest

from sagas.engine.callbacks import (
    CONFLICT,
    DUPLICATE,
    RECORD,
    callback_fate,
    callback_record,
    callback_text,
    callback_token,
    callback_url,
    callback_verdict,
    token_matches,
)
from sagas.engine.outcomes import CallResult
from sagas.engine.plan import plan_build
from sagas.engine.repair import Resume, resume_apply
from sagas.engine.transitions import (
    Call,
    call_settle,
    call_start,
    cancel_apply,
    decide,
    pause_apply,
)
from tests.unit.test_transitions import NOW, new_state

ACCEPTED = CallResult("succeeded", 202, {"accepted": True})
OK = CallResult("succeeded", 200, {"id": 1})
SECRET = "s3cret"


# The token and the URL --------------------------------------------------------------


def test_one_token_per_saga_step_and_run_derived_from_the_secret():
    token = callback_token(SECRET, "saga-1", "pick", 1)

    assert token == callback_token(SECRET, "saga-1", "pick", 1)
    assert len(token) == 64 and int(token, 16) >= 0
    others = {
        callback_token(SECRET, "saga-2", "pick", 1),
        callback_token(SECRET, "saga-1", "ship", 1),
        callback_token(SECRET, "saga-1", "pick", 2),
        callback_token("other", "saga-1", "pick", 1),
    }
    assert token not in others and len(others) == 4


def test_token_matches_only_the_exact_token():
    token = callback_token(SECRET, "saga-1", "pick", 1)

    assert token_matches(SECRET, "saga-1", "pick", 1, token)
    assert not token_matches(SECRET, "saga-1", "pick", 1, token.upper())
    assert not token_matches(SECRET, "saga-1", "pick", 2, token)
    assert not token_matches(SECRET, "saga-1", "pick", 1, None)
    assert not token_matches(SECRET, "saga-1", "pick", 1, "")
    assert not token_matches(SECRET, "saga-1", "pick", 1, "é" * 64)  # non-ASCII: no error


def test_the_callback_url_is_under_the_public_url():
    assert callback_url("https://saga.example/", "s-1", "pick") == (
        "https://saga.example/api/sagas/s-1/steps/pick/callback/"
    )


# What a callback may do (the API's verdict) ------------------------------------------


def waiting_step(**extra):
    until = (NOW + timedelta(seconds=60)).isoformat()
    step = {"name": "pick", "status": "waiting", "run": 1, "waiting_until": until}
    return step | extra


def verdict(step, *, pending=None, outcome="succeeded", response=None, **saga):
    return callback_verdict(
        saga_status=saga.get("status", "running"),
        cancel_requested=saga.get("cancel_requested", False),
        step=step,
        pending=pending,
        outcome=outcome,
        response=response,
        now=saga.get("now", NOW),
    ).kind


def pending(step="pick", run=1, outcome="succeeded", response=None):
    return callback_record(
        step=step, run=run, outcome=outcome, response=response, error=None, now=NOW
    )


def test_a_waiting_step_records_a_callback_until_its_timeout():
    assert verdict(waiting_step()) == RECORD
    assert verdict(waiting_step(), status="paused") == RECORD
    assert verdict(waiting_step(), now=NOW + timedelta(seconds=60)) == CONFLICT


def test_an_action_in_flight_records_it_a_compensation_in_flight_does_not():
    running = {"name": "pick", "status": "running", "in_flight": {"phase": "action"}}
    undoing = {"name": "pick", "status": "compensating", "in_flight": {"phase": "compensation"}}
    retry_wait = {"name": "pick", "status": "running"}

    assert verdict(running) == RECORD
    assert verdict(undoing, status="compensating") == CONFLICT
    assert verdict(retry_wait) == CONFLICT


@pytest.mark.parametrize(
    ("status", "cancel_requested"),
    [("compensating", False), ("running", True), ("completed", False), ("cancelled", False)],
)
def test_a_cancelled_or_finished_saga_refuses_callbacks(status, cancel_requested):
    result = verdict(waiting_step(), status=status, cancel_requested=cancel_requested)
    assert result == CONFLICT


def test_the_same_callback_again_is_a_duplicate_another_one_a_conflict():
    kept = pending(response={"box": 1})

    assert verdict(waiting_step(), pending=kept, response={"box": 1}) == DUPLICATE
    assert verdict(waiting_step(), pending=kept, response={"box": 2}) == CONFLICT
    assert verdict(waiting_step(), pending=kept, outcome="failed", response={"box": 1}) == CONFLICT
    applied = {
        "name": "pick",
        "status": "succeeded",
        "callback": {"outcome": "succeeded", "response": {"box": 1}},
    }
    assert verdict(applied, response={"box": 1}, status="completed") == DUPLICATE
    assert verdict(applied, response=None, status="completed") == CONFLICT


def test_a_pending_callback_of_another_step_or_run_is_not_this_ones():
    assert verdict(waiting_step(), pending=pending(step="ship")) == RECORD
    assert verdict(waiting_step(run=2), pending=pending(run=1)) == RECORD


def test_the_column_text_is_canonical():
    record = pending(response={"b": 1, "a": [1, 2]})
    assert callback_text(record) == callback_text(dict(reversed(list(record.items()))))


def test_the_worker_applies_keeps_or_discards_a_pending_callback():
    steps = [waiting_step(), {"name": "ship", "status": "pending"}]
    running = [{"name": "pick", "status": "running", "run": 1}]
    done = [{"name": "pick", "status": "succeeded", "run": 1}]

    assert callback_fate(steps, pending()) == "apply"
    assert callback_fate(steps, pending(run=2)) == "discard"
    assert callback_fate(steps, pending(step="nope")) == "discard"
    assert callback_fate(running, pending()) == "keep"
    assert callback_fate(done, pending()) == "discard"


# The transitions of a waiting step ------------------------------------------------------


def plan(on_failure=None, timeout=60.0):
    pick = {
        "name": "pick",
        "action": {"method": "POST", "url": "http://p/pick", "async": {"timeout_seconds": timeout}},
        "compensation": {"method": "POST", "url": "http://p/undo-pick"},
    }
    if on_failure:
        pick["on_failure"] = on_failure
    steps = [
        {
            "name": "charge",
            "action": {"method": "POST", "url": "http://p/charge"},
            "compensation": {"method": "POST", "url": "http://p/refund"},
        },
        pick,
        {"name": "ship", "action": {"method": "POST", "url": "http://p/ship"}},
    ]
    return plan_build(
        definition="d",
        steps=steps,
        retry_attempts=3,
        retry_delay=1,
        compensation_attempts=2,
        call_timeout=30,
    )


def step_once(state, p, result, now=NOW):
    state, call = decide(state, p, now)
    assert call is not None
    return call_settle(call_start(state, call, now), p, call, result, now, rand=0.0), call


def waiting(p=None, now=NOW):
    """The saga after charge succeeded and pick answered 202."""
    p = p or plan()
    state, _ = step_once(new_state(p), p, OK, now)
    state, _ = step_once(state, p, ACCEPTED, now)
    return p, state


def test_a_202_of_an_async_action_waits_until_the_async_timeout():
    p, state = waiting()

    assert [s["status"] for s in state.steps] == ["succeeded", "waiting", "pending"]
    assert state.status == "running"
    assert state.next_attempt_at == NOW + timedelta(seconds=60)
    assert state.steps[1]["waiting_until"] == state.next_attempt_at.isoformat()
    assert [e["event"] for e in state.events][-1] == "step_waiting"
    assert decide(state, p, NOW + timedelta(seconds=30))[1] is None  # not due: nothing


def test_a_202_of_an_ordinary_action_and_a_200_of_an_async_one_succeed_at_once():
    p = plan()
    ordinary, _ = step_once(new_state(p), p, ACCEPTED)
    state, _ = step_once(ordinary, p, OK)

    assert ordinary.steps[0]["status"] == "succeeded"
    assert state.steps[1]["status"] == "succeeded" and state.current_step == 2


def test_the_wait_ends_at_the_saga_deadline_if_sooner():
    p = plan(timeout=3600)
    _, state = waiting(p)

    assert state.next_attempt_at == NOW + timedelta(minutes=5)
    late = NOW + timedelta(minutes=5)
    state, call = decide(state, p, late)
    assert state.status == "compensating" and state.error["code"] == "timeout"
    assert call == Call("compensation", 1, 1)  # the waiting step, as uncertain


def test_a_succeeded_callback_moves_on_with_its_response():
    p, state = waiting()
    state.callback = pending(response={"box": "B-1"})

    state, call = decide(state, p, NOW + timedelta(seconds=1))

    assert call == Call("action", 2, 1)
    assert state.steps[1]["status"] == "succeeded"
    assert state.steps[1]["response"] == {"box": "B-1"}
    assert state.callback is None  # applied: the store clears the column
    assert state.events[-1]["details"]["via"] == "callback"


def test_a_failed_callback_is_a_permanent_failure_not_undone():
    p, state = waiting()
    state.callback = pending(outcome="failed") | {"error": "no stock"}

    state, call = decide(state, p, NOW + timedelta(seconds=1))

    assert state.status == "compensating"
    assert state.steps[1]["status"] == "failed"
    assert state.steps[1]["error"] == "callback: no stock"
    assert call == Call("compensation", 0, 1)  # the charge; the pick did not happen


def test_a_failed_callback_with_on_failure_pause_pauses():
    p, state = waiting(plan(on_failure="pause"))
    state.callback = pending(outcome="failed")

    state, call = decide(state, p, NOW + timedelta(seconds=1))

    assert call is None and state.status == "paused"
    assert state.steps[1]["status"] == "failed"


def test_no_callback_by_the_timeout_is_an_uncertain_failure_compensated():
    p, state = waiting()

    state, call = decide(state, p, NOW + timedelta(seconds=60))

    assert state.status == "compensating"
    assert state.steps[1]["uncertain"] is True
    assert state.error["message"] == "no callback within 60 s"
    assert call == Call("compensation", 1, 1)


def test_a_callback_recorded_before_the_timeout_wins_over_a_late_claim():
    p, state = waiting()
    state.callback = pending(response={"box": 1})

    state, call = decide(state, p, NOW + timedelta(seconds=90))

    assert state.steps[1]["status"] == "succeeded" and call == Call("action", 2, 1)


def test_a_kept_callback_does_not_cut_a_retry_wait_short():
    p = plan()
    state, _ = step_once(new_state(p), p, OK)
    busy = CallResult("retryable_error", 503, None, "HTTP 503", uncertain=True)
    state, _ = step_once(state, p, busy)
    state.callback = pending()

    decided, call = decide(state, p, NOW)

    assert call is None and decided.callback is not None  # kept for the next 202


def test_cancel_of_a_waiting_saga_undoes_the_waiting_step_first():
    p, state = waiting()

    cancel_apply(state, NOW)
    state, call = decide(state, p, NOW)

    assert state.status == "compensating" and state.error["code"] == "cancelled"
    assert state.steps[1]["uncertain"] is True
    assert call == Call("compensation", 1, 1)


def test_a_success_applied_while_compensating_keeps_its_response_for_the_undo():
    p, state = waiting()
    cancel_apply(state, NOW)
    state.callback = pending(response={"box": "B-4"})

    state, call = decide(state, p, NOW)

    assert call == Call("compensation", 1, 1)
    assert state.steps[1]["response"] == {"box": "B-4"}


def test_resume_moves_the_async_timeout_on_by_the_paused_time():
    p, state = waiting()
    pause_apply(state, NOW + timedelta(seconds=10), {"actor": "internal"})

    resume_apply(state, Resume(), NOW + timedelta(seconds=110))
    state, call = decide(state, p, NOW + timedelta(seconds=110))

    assert call is None and state.status == "running"
    assert state.next_attempt_at == NOW + timedelta(seconds=160)
