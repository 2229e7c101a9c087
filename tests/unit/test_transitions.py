"""decide() and friends, a transition at a time, with no database and no clock."""

from datetime import UTC, datetime, timedelta

from sagas.engine.outcomes import CallResult
from sagas.engine.plan import plan_build, steps_initial
from sagas.engine.transitions import (
    INTERRUPTED,
    INTERRUPTED_FAILURE,
    Call,
    SagaState,
    call_interrupted,
    call_settle,
    call_start,
    cancel_refusal,
    decide,
    interruption_settle,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OK = CallResult("succeeded", 200, {"id": 1})
REJECTED = CallResult("permanent_error", 422, None, "HTTP 422: no")
BUSY = CallResult("retryable_error", 503, None, "HTTP 503", uncertain=True)
THROTTLED = CallResult("retryable_error", 429, None, "HTTP 429", retry_after=10.0)
TIMED_OUT = CallResult("retryable_error", None, None, "timed out after 1 s", uncertain=True)
IN_PROGRESS = CallResult("permanent_error", 409, None, "HTTP 409: in progress")
REFUSED = CallResult("retryable_error", None, None, "connection refused")
BAD_TEMPLATE = CallResult("permanent_error", None, None, "placeholder ${x} does not resolve")


def plan(names=("a", "b", "c"), *, attempts=3, compensations=None, delay=1.0, comp_attempts=2):
    compensations = names if compensations is None else compensations
    steps = [
        {
            "name": n,
            "action": {"method": "POST", "url": f"http://p/{n}"},
            "compensation": {"method": "POST", "url": f"http://p/undo-{n}"}
            if n in compensations
            else None,
            "retry": {"max_attempts": attempts, "delay_seconds": delay, "backoff_multiplier": 2},
        }
        for n in names
    ]
    return plan_build(
        definition="d",
        steps=steps,
        retry_attempts=3,
        retry_delay=5,
        compensation_attempts=comp_attempts,
        call_timeout=30,
    )


def new_state(p, **changes):
    state = SagaState(
        status="pending",
        phase="action",
        current_step=0,
        steps=steps_initial([{"name": s.name} for s in p.steps]),
        error=None,
        cause=None,
        cancel_requested=False,
        deadline_at=NOW + timedelta(minutes=5),
        next_attempt_at=None,
    )
    for key, value in changes.items():
        setattr(state, key, value)
    return state


def run(state, p, outcomes, now=NOW):
    """Feed outcomes to the calls decide() asks for; return (state, calls made)."""
    calls = []
    for result in outcomes:
        state, call = decide(state, p, now)
        assert call is not None, f"no call left for {result}"
        calls.append(call)
        state = call_settle(call_start(state, call, now), p, call, result, now, rand=0.0)
        if state.next_attempt_at and state.next_attempt_at > now:
            now = state.next_attempt_at
    state, call = decide(state, p, now)
    assert call is None
    return state, calls


def statuses(state):
    return [s["status"] for s in state.steps]


def test_a_new_saga_calls_the_first_action():
    p = plan()
    state, call = decide(new_state(p), p, NOW)
    assert call == Call("action", 0, 1)
    started = call_start(state, call, NOW)
    assert started.status == "running" and started.steps[0]["status"] == "running"
    assert started.steps[0]["attempts"] == 1 and started.steps[0]["in_flight"]
    assert started.started_at == NOW


def test_all_actions_succeed_then_completed():
    p = plan()
    state, calls = run(new_state(p), p, [OK, OK, OK])
    assert [c.index for c in calls] == [0, 1, 2]
    assert state.status == "completed" and state.error is None
    assert statuses(state) == ["succeeded"] * 3
    assert state.finished_at == NOW and state.next_attempt_at is None


def test_a_rejection_compensates_earlier_steps_in_reverse_and_not_itself():
    p = plan(("a", "b", "c", "d"))
    state, calls = run(new_state(p), p, [OK, OK, OK, REJECTED, OK, OK, OK])
    assert [(c.phase, c.index) for c in calls[4:]] == [
        ("compensation", 2),
        ("compensation", 1),
        ("compensation", 0),
    ]
    assert state.status == "compensated"
    assert state.error == {"code": "step_failed", "step": "d", "message": "HTTP 422: no"}
    assert statuses(state) == ["compensated"] * 3 + ["failed"]


def test_retryable_outcomes_schedule_a_retry_in_the_state():
    p = plan(delay=2.0)
    state, call = decide(new_state(p), p, NOW)
    state = call_settle(call_start(state, call, NOW), p, call, BUSY, NOW, rand=0.0)
    assert state.next_attempt_at == NOW + timedelta(seconds=2)
    assert decide(state, p, NOW)[1] is None  # waiting: nothing to do yet
    assert decide(state, p, state.next_attempt_at)[1] == Call("action", 0, 2)


def test_retry_after_pushes_the_retry_out():
    p = plan(delay=1.0)
    state, call = decide(new_state(p), p, NOW)
    state = call_settle(call_start(state, call, NOW), p, call, THROTTLED, NOW, rand=0.0)
    assert state.next_attempt_at >= NOW + timedelta(seconds=10)


def test_a_retry_never_waits_past_the_deadline():
    p = plan(delay=600.0)
    state = new_state(p, deadline_at=NOW + timedelta(seconds=5))
    state, call = decide(state, p, NOW)
    state = call_settle(call_start(state, call, NOW), p, call, BUSY, NOW, rand=0.0)
    assert state.next_attempt_at == NOW + timedelta(seconds=5)


def test_an_uncertain_step_whose_retries_ran_out_is_compensated():
    p = plan()
    state, calls = run(new_state(p), p, [OK, BUSY, BUSY, BUSY, OK, OK])
    assert [(c.phase, c.index) for c in calls[4:]] == [("compensation", 1), ("compensation", 0)]
    assert statuses(state) == ["compensated", "compensated", "skipped"]
    assert state.steps[1]["attempts"] == 3


def test_a_certain_non_event_whose_retries_ran_out_is_not_compensated():
    p = plan()
    state, calls = run(new_state(p), p, [OK, THROTTLED, THROTTLED, THROTTLED, OK])
    assert statuses(state) == ["compensated", "failed", "skipped"]


def test_steps_without_compensation_have_nothing_to_undo():
    p = plan(compensations=("a",))
    state, calls = run(new_state(p), p, [OK, OK, REJECTED, OK])
    assert [(c.phase, c.index) for c in calls[3:]] == [("compensation", 0)]
    assert statuses(state) == ["compensated", "compensated", "failed"]


def test_compensation_budget_then_failed_then_retry_base_gives_a_new_budget():
    p = plan(comp_attempts=2)
    state, calls = run(new_state(p), p, [OK, REJECTED, BUSY, BUSY])
    assert state.status == "failed"
    assert state.error == {"code": "compensation_failed", "step": "a", "message": "HTTP 503"}
    assert state.cause["code"] == "step_failed"
    assert statuses(state) == ["compensation_failed", "failed", "skipped"]
    # What saga_retry does:
    state.status, state.next_attempt_at = "compensating", None
    state.steps[0].update(status="compensating", retry_base=2)
    state, calls = run(state, p, [BUSY, OK])
    assert [c.attempt for c in calls] == [3, 4]
    assert state.status == "compensated" and state.error["code"] == "step_failed"


def test_a_compensation_that_cannot_be_made_fails_at_once():
    p = plan(comp_attempts=5)
    state, calls = run(new_state(p), p, [OK, REJECTED, BAD_TEMPLATE])
    assert state.status == "failed" and len(calls) == 3


def test_cancel_takes_effect_at_the_next_transition():
    p = plan()
    state, calls = run(new_state(p, cancel_requested=True), p, [])
    assert state.status == "cancelled" and state.error["code"] == "cancelled"
    assert statuses(state) == ["skipped"] * 3
    state, call = decide(new_state(p), p, NOW)
    state = call_settle(call_start(state, call, NOW), p, call, OK, NOW, 0.0)
    state.cancel_requested = True
    state, calls = run(state, p, [OK])
    assert calls == [Call("compensation", 0, 1)]
    assert state.status == "cancelled" and statuses(state) == ["compensated", "skipped", "skipped"]


def settled(p, result, state=None, now=NOW):
    """One call decide() asks for, settled with `result`."""
    state, call = decide(state or new_state(p), p, now)
    return call_settle(call_start(state, call, now), p, call, result, now, 0.0)


def test_cancel_during_the_last_action_still_compensates_it():
    p = plan(("a", "b"))
    state = settled(p, OK)
    state, call = decide(state, p, NOW)
    state = call_start(state, call, NOW)
    state.cancel_requested = True  # accepted while the last call was in flight
    state = call_settle(state, p, call, OK, NOW, 0.0)
    state, calls = run(state, p, [OK, OK])
    assert calls == [Call("compensation", 1, 1), Call("compensation", 0, 1)]
    assert state.status == "cancelled"
    assert state.error == {"code": "cancelled", "step": "b", "message": "Cancelled on request."}
    assert statuses(state) == ["compensated", "compensated"]


def test_cancel_after_the_last_action_succeeded_still_compensates_it():
    p = plan(("a",))
    state = settled(p, OK)
    state.cancel_requested = True  # the fence found it before `completed` was written
    state, call = decide(state, p, NOW)
    assert state.status == "compensating" and call == Call("compensation", 0, 1)


def test_a_cancel_is_accepted_only_before_compensation_and_only_once():
    assert cancel_refusal("pending", False) is None
    assert cancel_refusal("running", False) is None
    for status in ("compensating", "completed", "compensated", "cancelled", "failed"):
        assert status in cancel_refusal(status, False)
    assert cancel_refusal("running", True) == "A cancel was already accepted for this saga."


def test_a_cancel_cuts_a_retry_wait_short():
    p = plan(delay=600.0)
    state = settled(p, BUSY)
    assert state.next_attempt_at == NOW + timedelta(seconds=60)  # the default cap
    state.cancel_requested = True
    state, call = decide(state, p, NOW)
    assert call == Call("compensation", 0, 1)
    assert state.status == "compensating" and state.error["code"] == "cancelled"


def test_a_cancel_raced_by_a_failure_still_ends_cancelled():
    p = plan()
    state = settled(p, OK)
    state = settled(p, REJECTED, state)  # the worker begins compensating for b's failure
    assert state.status == "compensating" and state.cause["code"] == "step_failed"
    state.cancel_requested = True  # the fence found a cancel accepted meanwhile
    state, calls = run(state, p, [OK])
    assert state.status == "cancelled" and state.error["code"] == "cancelled"
    assert statuses(state) == ["compensated", "failed", "skipped"]


def test_uncertain_is_sticky_through_a_later_rejection():
    p = plan(attempts=2)
    for first in (TIMED_OUT, BUSY):
        state, calls = run(new_state(p), p, [OK, first, IN_PROGRESS, OK, OK])
        assert [(c.phase, c.index) for c in calls[3:]] == [
            ("compensation", 1),
            ("compensation", 0),
        ]
        assert statuses(state) == ["compensated", "compensated", "skipped"]
        assert state.steps[1]["uncertain"] is True
        assert state.error["message"] == "HTTP 409: in progress"


def test_a_step_whose_attempts_all_certainly_failed_is_not_compensated():
    p = plan(attempts=2)
    for results in ([REFUSED, REFUSED], [THROTTLED, REJECTED], [REFUSED, IN_PROGRESS]):
        state, calls = run(new_state(p), p, [OK, *results, OK])
        assert calls[-1] == Call("compensation", 0, 1)
        assert statuses(state) == ["compensated", "failed", "skipped"]


def test_a_cancel_during_a_certain_retry_wait_does_not_compensate_that_step():
    p = plan(delay=600.0)
    state = settled(p, OK)
    state = settled(p, THROTTLED, state)
    state.cancel_requested = True
    state, calls = run(state, p, [OK])
    assert calls == [Call("compensation", 0, 1)]
    assert statuses(state) == ["compensated", "failed", "skipped"]


def test_the_deadline_starts_no_action_and_compensates_with_timeout():
    p = plan()
    state, call = decide(new_state(p), p, NOW)
    state = call_settle(call_start(state, call, NOW), p, call, OK, NOW, 0.0)
    late = NOW + timedelta(minutes=6)
    state, calls = run(state, p, [OK], now=late)
    assert calls == [Call("compensation", 0, 1)]
    assert state.status == "compensated" and state.error["code"] == "timeout"
    assert state.error["step"] == "b"


def interrupt(state, p, limit=3):
    """What a new worker does with the call a dead one left in flight."""
    call = call_interrupted(state)
    state, logged = interruption_settle(state, p, call, NOW, 0.0, limit)
    return state, call, logged


def test_a_last_action_that_succeeded_after_the_deadline_is_compensated():
    p = plan(("a",))
    state = settled(p, OK, new_state(p, deadline_at=NOW + timedelta(seconds=1)))
    state, calls = run(state, p, [OK], now=NOW + timedelta(seconds=2))
    assert calls == [Call("compensation", 0, 1)]
    assert state.status == "compensated" and state.error["code"] == "timeout"
    on_time, _ = decide(settled(p, OK), p, NOW)
    assert on_time.status == "completed"


def test_a_call_left_in_flight_by_a_lost_worker_is_sent_again_as_the_same_attempt():
    p = plan(attempts=1)
    state, call = decide(new_state(p), p, NOW)
    state = call_start(state, call, NOW)  # persisted; then the worker died
    state, interrupted, logged = interrupt(state, p)
    assert interrupted == Call("action", 0, 1) and logged == INTERRUPTED
    assert "in_flight" not in state.steps[0] and state.steps[0]["attempts"] == 0
    assert state.steps[0]["interruptions"] == 1 and state.steps[0]["uncertain"]
    state, call = decide(state, p, NOW)  # at once, not after a retry delay
    assert call == Call("action", 0, 1)
    state, calls = run(state, p, [OK, OK, OK])
    assert state.status == "completed" and state.steps[0]["attempts"] == 1


def test_one_interruption_past_the_limit_counts_as_an_uncertain_failed_attempt():
    p = plan(("a", "b"), attempts=1)
    state = settled(p, OK)
    for _ in range(2):
        state, call = decide(state, p, NOW)
        state, _, logged = interrupt(call_start(state, call, NOW), p, limit=2)
        assert logged == INTERRUPTED
    state, call = decide(state, p, NOW)
    assert call == Call("action", 1, 1)
    state, _, logged = interrupt(call_start(state, call, NOW), p, limit=2)
    assert logged == INTERRUPTED_FAILURE
    assert state.status == "compensating" and state.steps[1]["attempts"] == 1
    state, calls = run(state, p, [OK, OK])
    assert statuses(state) == ["compensated", "compensated"]
    assert state.error["message"] == INTERRUPTED_FAILURE.error


def test_interruptions_of_a_compensation_are_counted_apart():
    p = plan(("a", "b"), comp_attempts=1)
    state = settled(p, REJECTED, settled(p, OK))
    state, call = decide(state, p, NOW)
    state = call_start(state, call, NOW)
    state, interrupted, logged = interrupt(state, p, limit=1)
    assert interrupted == Call("compensation", 0, 1) and logged == INTERRUPTED
    assert state.steps[0]["compensation_interruptions"] == 1
    assert state.steps[0]["compensation_attempts"] == 0
    state, calls = run(state, p, [OK])
    assert calls == [Call("compensation", 0, 1)] and state.status == "compensated"


def test_terminal_sagas_have_nothing_to_do():
    p = plan()
    state, _ = run(new_state(p), p, [OK, OK, OK])
    again, call = decide(state, p, NOW + timedelta(days=1))
    assert call is None and again.status == "completed"


def test_compensations_are_retried_on_any_non_2xx_outcome_even_a_4xx():
    p = plan(comp_attempts=3)
    state, calls = run(new_state(p), p, [OK, REJECTED, REJECTED, OK])
    assert [(c.phase, c.index, c.attempt) for c in calls[2:]] == [
        ("compensation", 0, 1),
        ("compensation", 0, 2),
    ]
    assert state.status == "compensated"
