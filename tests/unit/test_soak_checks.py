"""The soak's invariant checks (bench/soak_checks.py) on hand-made records: each catches
the violation it is for, and the races a correct engine produces are not violations."""

from bench.soak_checks import (
    SagaFacts,
    check_calls_within_attempts,
    check_cancel_acts_promptly,
    check_compensation_exactly,
    check_compensation_order,
    check_crash_not_an_attempt,
    check_no_action_after_compensation,
    check_no_call_after_finish,
    check_status_consistent,
)
from bench.soak_participant import CallRecord

STEPS = [("reserve", True), ("charge", True), ("ship", False)]


def call(seq, step, phase="action", status=200, end="answered", **extra) -> CallRecord:
    record = CallRecord(
        seq=seq,
        saga_id="s1",
        step=step,
        phase=phase,
        key=f"s1:{step}:{phase}",
        kind=extra.pop("kind", "ok"),
        started=extra.pop("started", 1000.0 + seq),
        **extra,
    )
    record.end, record.status = end, status if end == "answered" else None
    record.ended = record.started + 0.01
    return record


def row(step, attempt, status_code=200, phase="action", outcome="succeeded", error=None):
    return {
        "step": step,
        "phase": phase,
        "attempt": attempt,
        "status_code": status_code,
        "outcome": outcome,
        "error": error,
    }


def saga(status, calls, logs=(), **extra) -> SagaFacts:
    detail = {"status": status, "steps": extra.pop("detail_steps", []), "error": None}
    detail["finished_at"] = extra.pop("finished_at", None)
    detail["error"] = extra.pop("error", None)
    return SagaFacts(id="s1", detail=detail, logs=list(logs), steps=STEPS, calls=calls, **extra)


def test_uncertain_then_rejected_step_must_be_compensated():
    # Issue 8 item 1: 503, then 409 on the retry; only reserve is undone.
    calls = [
        call(0, "reserve"),
        call(1, "charge", status=503),
        call(2, "charge", status=409),
        call(3, "reserve", "compensation"),
    ]
    problems = check_compensation_exactly(saga("compensated", calls))
    assert len(problems) == 1 and "charge may have taken effect" in problems[0]
    calls.insert(3, call(4, "charge", "compensation"))
    assert check_compensation_exactly(saga("compensated", calls)) == []


def test_a_step_only_rejected_must_not_be_compensated_unless_the_caller_timed_out():
    calls = [call(0, "reserve"), call(1, "charge", status=422), call(2, "charge", "compensation")]
    calls.append(call(3, "reserve", "compensation"))
    assert "never took effect" in check_compensation_exactly(saga("compensated", calls))[0]
    # The 422 was written just after the orchestrator's timeout fired: uncertain for it.
    logs = [row("reserve", 1), row("charge", 1, None, outcome="retryable_error")]
    logs[1]["error"] = "timed out after 1 s"
    assert check_compensation_exactly(saga("compensated", calls, logs)) == []
    # ... and then required: leaving it out is a violation.
    without = [c for c in calls if not (c.step == "charge" and c.phase == "compensation")]
    assert check_compensation_exactly(saga("compensated", without, logs))


def test_cut_and_stale_calls_count_as_may_have_taken_effect():
    for cut in (call(1, "charge", end="peer_closed", kind="slow"), call(1, "charge", end="stale")):
        calls = [call(0, "reserve"), cut, call(2, "charge", status=400)]
        calls.append(call(3, "reserve", "compensation"))
        assert check_compensation_exactly(saga("compensated", calls))


def test_compensations_run_backwards_one_at_a_time():
    good = [
        call(0, "reserve"),
        call(1, "charge"),
        call(2, "ship", status=422),
        call(3, "charge", "compensation", status=503),
        call(4, "charge", "compensation"),
        call(5, "reserve", "compensation"),
    ]
    assert check_compensation_order(saga("compensated", good)) == []
    moved_on = [*good[:4], good[5]]  # reserve undone while charge's undo had failed
    assert (
        "before charge's compensation succeeded"
        in check_compensation_order(saga("compensated", moved_on))[0]
    )
    wrong_way = [*good[:3], good[5], good[4]]
    assert check_compensation_order(saga("compensated", wrong_way))


def test_no_action_after_compensation_ignores_a_request_the_caller_had_given_up():
    calls = [call(0, "reserve"), call(1, "reserve", "compensation"), call(2, "charge")]
    assert check_no_action_after_compensation(saga("compensated", calls))
    calls[2].stale = True
    assert check_no_action_after_compensation(saga("compensated", calls)) == []


def test_no_call_after_finished_at():
    finished = "2026-12-06T07:00:00+00:00"
    at = 1796540400.0  # that instant
    late = call(0, "reserve", started=at + 0.5)
    assert check_no_call_after_finish(saga("completed", [late], finished_at=finished))
    early = call(0, "reserve", started=at - 0.5)
    assert check_no_call_after_finish(saga("completed", [early], finished_at=finished)) == []


def test_calls_within_attempts_counts_interruptions():
    steps = [{"name": "reserve", "attempts": 1, "compensation_attempts": 0}]
    calls = [call(0, "reserve", end="peer_closed"), call(1, "reserve")]
    facts = saga("completed", calls, [row("reserve", 1, None, outcome=None)], detail_steps=steps)
    assert check_calls_within_attempts(facts)
    logs = [row("reserve", 1, None, outcome="interrupted"), row("reserve", 1)]
    assert check_calls_within_attempts(saga("completed", calls, logs, detail_steps=steps)) == []


def test_a_crash_is_not_an_attempt():
    lost = row("reserve", 1, None, outcome="retryable_error", error="interrupted: worker lost")
    assert check_crash_not_an_attempt(saga("completed", [], [lost, row("reserve", 2)]))
    resent = [row("reserve", 1, None, outcome="interrupted"), row("reserve", 1)]
    assert check_crash_not_an_attempt(saga("completed", [], resent)) == []


def test_an_accepted_cancel_ends_cancelled_and_acts_at_once():
    calls = [call(0, "reserve"), call(1, "charge"), call(2, "ship")]
    problems = check_status_consistent(saga("completed", calls, cancel="accepted"))
    assert problems == ["s1: cancel answered 202, saga ended completed"]
    waited = [*calls, call(3, "charge", "compensation", started=1050.0)]
    facts = saga("cancelled", waited, cancel="accepted", cancel_at=1001.5)
    facts.detail["error"] = {"code": "cancelled"}
    assert check_cancel_acts_promptly(facts, timeout=1.0, lease=3.0)
    waited[3].started = 1003.0
    assert check_cancel_acts_promptly(facts, timeout=1.0, lease=3.0) == []


def test_an_unfinished_saga_says_where_it_stands():
    from bench.soak_checks import SagaFacts, check_all_terminal

    detail = {
        "status": "running",
        "steps": [
            {"name": "a", "status": "succeeded", "attempts": 1, "compensation_attempts": 0},
            {"name": "b", "status": "running", "attempts": 2, "compensation_attempts": 0},
        ],
    }
    log = {"step": "b", "phase": "action", "attempt": 2, "outcome": "retryable_error"}
    log["started_at"] = "2026-12-06T11:44:00Z"
    saga = SagaFacts(id="s-1", detail=detail, logs=[log], steps=[("a", True), ("b", True)])
    assert check_all_terminal([saga]) == [
        "s-1: still running at the end; steps: a succeeded 1+0, b running 2+0;"
        " last call b action #2 retryable_error at 2026-12-06T11:44:00Z; cancel None"
    ]
