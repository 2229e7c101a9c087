"""Operator repair as pure functions (DESIGN §9.2): merge patches, pause and resume
refusals, the state a resume leaves, rewinds, and the run whose key a call carries."""

from dataclasses import replace
from datetime import timedelta

import pytest

from sagas.engine.calls import idempotency_key
from sagas.engine.outcomes import CallResult
from sagas.engine.repair import Resume, pause_refusal, resume_apply, resume_refusal
from sagas.engine.transitions import (
    Call,
    call_settle,
    call_start,
    cancel_apply,
    decide,
    key_run,
    pause_apply,
)
from sagas.errors import Invalid
from sagas.jsonutil import merge_patch
from tests.unit.test_transitions import BUSY, NOW, OK, REJECTED, new_state, plan, statuses

# RFC 7396 Appendix A.
RFC_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_EXAMPLES)
def test_merge_patch_follows_rfc_7396(target, patch, result):
    assert merge_patch(target, patch) == result


def test_merge_patch_changes_neither_argument():
    target, patch = {"a": {"b": 1}}, {"a": {"c": 2}}
    merge_patch(target, patch)
    assert target == {"a": {"b": 1}} and patch == {"a": {"c": 2}}


def test_pause_and_resume_refusals():
    assert pause_refusal("running", False, None) is None
    assert pause_refusal("pending", False, None) is None
    assert "cancel" in pause_refusal("running", True, None)
    assert "already paused" in pause_refusal("paused", False, {"actor": "internal"})
    assert "already accepted" in pause_refusal("running", False, {"actor": "internal"})
    for status in ("compensating", "completed", "compensated", "cancelled", "failed"):
        assert status in pause_refusal(status, False, None)
    assert resume_refusal("paused") is None
    assert "running" in resume_refusal("running")


def test_the_nth_run_of_a_step_carries_a_suffix_from_the_second_on():
    assert idempotency_key("s", "charge", "action") == "s:charge:action"
    assert idempotency_key("s", "charge", "action", 1) == "s:charge:action"
    assert idempotency_key("s", "charge", "compensation", 3) == "s:charge:compensation:3"


def test_key_run_reuses_the_uncertain_key_only_for_the_same_request():
    step = {"run": 2, "reuse_key": {"run": 1, "fingerprint": "f"}}
    assert key_run(step, "f") == 1
    assert key_run(step, "g") == 2
    assert key_run(step, None) == 2
    assert key_run({"run": 3, "key_run": 1}, "x") == 1  # decided at the run's first call


def paused_after(p, outcomes, on_failure="pause"):
    """A saga of plan `p` (its steps set to pause on failure) fed `outcomes`."""
    p = plan_with(p, on_failure)
    state = new_state(p)
    for result in outcomes:
        state, call = decide(state, p, NOW)
        state = call_settle(call_start(state, call, NOW, "fp"), p, call, result, NOW, 0.0)
    state, call = decide(state, p, NOW)
    assert call is None
    return p, state


def plan_with(p, on_failure):
    return replace(p, steps=tuple(replace(s, on_failure=on_failure) for s in p.steps))


def test_a_final_failure_pauses_instead_of_compensating():
    p, state = paused_after(plan(attempts=1), [OK, REJECTED])
    assert state.status == "paused" and state.paused_at == NOW
    assert statuses(state) == ["succeeded", "failed", "pending"]
    assert state.error["code"] == "step_failed" and state.error["step"] == "b"
    assert [e["event"] for e in state.events][-3:] == ["step_succeeded", "step_failed", "paused"]


def test_resume_moves_the_deadline_on_by_the_paused_time():
    p, state = paused_after(plan(attempts=1), [REJECTED])
    deadline = state.deadline_at
    resume_apply(state, Resume(), NOW + timedelta(minutes=7))
    assert state.deadline_at == deadline + timedelta(minutes=7)
    assert state.status == "running" and state.paused_at is None


def test_a_plain_resume_of_a_failed_step_is_its_next_run_with_a_fresh_budget():
    p, state = paused_after(plan(attempts=1), [OK, REJECTED])
    resume_apply(state, Resume(), NOW)
    step = state.steps[1]
    assert (step["status"], step["run"], step["attempts"]) == ("pending", 2, 0)
    assert "reuse_key" not in step  # certain failure: a new key
    state, call = decide(state, p, NOW)
    assert call == Call("action", 1, 1)


def test_a_plain_resume_of_an_uncertain_step_offers_its_key_for_the_same_request():
    p, state = paused_after(plan(attempts=1), [OK, BUSY])
    assert state.steps[1]["uncertain"] and state.steps[1]["status"] == "failed"
    resume_apply(state, Resume(), NOW)
    assert state.steps[1]["reuse_key"] == {"run": 1, "fingerprint": "fp"}
    assert state.steps[1]["uncertain"]  # an earlier run may have taken effect

    _, patched = paused_after(plan(attempts=1), [OK, BUSY])
    resume_apply(patched, Resume(patched=True), NOW)
    assert "reuse_key" not in patched.steps[1]


def test_a_rewind_compensates_back_to_from_step_then_runs_forward_again():
    p, state = paused_after(plan(attempts=1), [OK, OK, BUSY])
    resume_apply(state, Resume(from_step="b"), NOW)
    assert (state.phase, state.rewind_step, state.current_step) == ("compensation", 1, 2)

    state, call = decide(state, p, NOW)
    assert call == Call("compensation", 2, 1)  # c may have happened: undone first
    state = call_settle(call_start(state, call, NOW), p, call, OK, NOW, 0.0)
    state, call = decide(state, p, NOW)
    assert call == Call("compensation", 1, 1)
    state = call_settle(call_start(state, call, NOW), p, call, OK, NOW, 0.0)
    state, call = decide(state, p, NOW)
    assert call == Call("action", 1, 1)
    assert state.status == "running" and state.rewind_step is None
    assert [s.get("run", 1) for s in state.steps] == [1, 2, 2]
    assert statuses(state)[0] == "succeeded"  # before from_step: untouched


def test_a_cancel_during_a_rewind_undoes_everything():
    p, state = paused_after(plan(attempts=1), [OK, OK, REJECTED])
    resume_apply(state, Resume(from_step="a"), NOW)
    state, call = decide(state, p, NOW)
    assert call == Call("compensation", 1, 1)
    state = call_settle(call_start(state, call, NOW), p, call, OK, NOW, 0.0)
    state.cancel_requested = True
    state, call = decide(state, p, NOW)
    assert call == Call("compensation", 0, 1)
    state = call_settle(call_start(state, call, NOW), p, call, OK, NOW, 0.0)
    state, call = decide(state, p, NOW)
    assert call is None and state.status == "cancelled"
    assert statuses(state) == ["compensated", "compensated", "failed"]


def test_skip_and_from_step_together_or_out_of_range_are_invalid_and_change_nothing():
    p, state = paused_after(plan(attempts=1), [OK, REJECTED])
    before = state.copy()
    for resume, field in (
        (Resume(from_step="a", skip={"response": 1}), "skip"),
        (Resume(from_step="c"), "from_step"),
        (Resume(from_step="zz"), "from_step"),
    ):
        with pytest.raises(Invalid) as refused:
            resume_apply(state, resume, NOW)
        assert refused.value.field == field
    assert state == before


def test_an_operator_pause_applies_before_the_next_action_and_cancel_wins():
    p = plan()
    state, call = decide(new_state(p), p, NOW)
    state = call_settle(call_start(state, call, NOW), p, call, OK, NOW, 0.0)
    state.pause_request = {"actor": "internal", "key_id": "k", "reason": "why"}
    paused, call = decide(state, p, NOW)
    assert call is None and paused.status == "paused" and paused.error is None
    assert paused.events[-1]["actor"] == "internal" and paused.events[-1]["reason"] == "why"

    state.cancel_requested = True
    cancelled, call = decide(state, p, NOW)
    assert cancelled.status == "compensating" and call == Call("compensation", 0, 1)


def test_cancel_of_a_paused_saga_undoes_an_uncertain_failed_step():
    p, state = paused_after(plan(attempts=1), [OK, BUSY])
    state.cancel_requested = True
    cancel_apply(state, NOW)
    assert state.status == "compensating" and state.error["code"] == "cancelled"
    state, call = decide(state, p, NOW)
    assert call == Call("compensation", 1, 1)


def test_pause_apply_keeps_who_asked():
    p = plan()
    state = new_state(p)
    pause_apply(state, NOW, {"actor": "internal", "key_id": "abcd", "reason": "r"})
    assert state.status == "paused"
    assert state.events == [
        {
            "at": NOW,
            "event": "paused",
            "step": None,
            "actor": "internal",
            "key_id": "abcd",
            "reason": "r",
            "details": None,
        }
    ]


def test_a_step_failing_for_good_while_a_pause_is_pending_pauses_instead_of_compensating():
    p = plan(attempts=1)  # on_failure: compensate
    state, call = decide(new_state(p), p, NOW)
    state = call_start(state, call, NOW)
    state.pause_request = {"actor": "internal", "key_id": "k", "reason": "look first"}
    state = call_settle(state, p, call, REJECTED, NOW, 0.0)
    assert state.status == "paused" and statuses(state)[0] == "failed"
    assert state.error["code"] == "step_failed"
    assert (state.events[-1]["event"], state.events[-1]["reason"]) == ("paused", "look first")


def test_a_rewind_does_not_undo_a_step_whose_attempts_certainly_failed():
    p = plan(attempts=3)
    state, call = decide(new_state(p), p, NOW)
    state = call_settle(call_start(state, call, NOW), p, call, OK, NOW, 0.0)
    state, call = decide(state, p, NOW)
    refused = CallResult("retryable_error", None, None, "connection refused")
    state = call_settle(call_start(state, call, NOW), p, call, refused, NOW, 0.0)
    pause_apply(state, NOW, {"actor": "internal"})  # between two retries of b
    resume_apply(state, Resume(from_step="b"), NOW)
    assert state.phase == "action" and state.current_step == 1
    assert state.steps[1]["status"] == "pending" and state.steps[1]["run"] == 2
