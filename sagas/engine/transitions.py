"""The life of a saga as pure functions of its state: no database, no clock, no network.

    decide(state, plan, now)        -> (state, call | None)   settle, then name the next call
    call_start(state, call, now)    -> state                  count the attempt, mark it in flight
    call_settle(state, plan, call, result, now, rand) -> state  what the outcome means
    interruption_settle(state, plan, call, now, rand, limit) -> (state, result)  a dead caller
    cancel_refusal(status, cancel_requested) -> reason | None   may a cancel be accepted

The executor persists each returned state with one fenced write (the store).
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sagas.engine.outcomes import CallResult
from sagas.engine.plan import SagaPlan
from sagas.engine.retry import retry_delay
from sagas.models import TERMINAL_STATUSES, ErrorCode, Outcome, Phase, SagaStatus, StepStatus

# Steps whose action took, or may have taken, effect: they are compensated.
NEEDS_UNDO = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.RUNNING,
        StepStatus.COMPENSATING,
        StepStatus.COMPENSATION_FAILED,
    }
)
CANCELLABLE_STATUSES = frozenset({SagaStatus.PENDING, SagaStatus.RUNNING})
INTERRUPTED_ERROR = "interrupted: the worker was lost during the call"
# A lost worker's call within the step's interruption budget: logged, not an attempt.
INTERRUPTED = CallResult(outcome=Outcome.INTERRUPTED, error=INTERRUPTED_ERROR, uncertain=True)
# One interruption too many: an uncertain failure of that attempt (a poison call).
INTERRUPTED_FAILURE = CallResult(
    outcome=Outcome.RETRYABLE_ERROR, error=INTERRUPTED_ERROR, uncertain=True
)


@dataclass
class SagaState:
    status: str
    phase: str
    current_step: int
    steps: list[dict]
    error: dict | None
    # Why the saga compensates; `error` until a compensation fails, the final error after.
    cause: dict | None
    cancel_requested: bool
    deadline_at: datetime | None
    next_attempt_at: datetime | None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def copy(self) -> "SagaState":
        return replace(self, steps=[dict(step) for step in self.steps])


@dataclass(frozen=True)
class Call:
    phase: str
    index: int
    attempt: int  # counts the first call


def decide(state: SagaState, plan: SagaPlan, now: datetime) -> tuple[SagaState, Call | None]:
    """Apply every change that needs no call (finish, start compensating, skip a step with
    nothing to undo), then return the call to make now, or None (terminal or waiting)."""
    state = state.copy()
    if state.status in TERMINAL_STATUSES:
        return state, None
    # A cancel cuts a retry wait short: compensation starts at once (§9.1).
    cancelling = state.cancel_requested and state.phase == Phase.ACTION
    if state.next_attempt_at is not None and state.next_attempt_at > now and not cancelling:
        return state, None
    if state.cancel_requested:
        _cancel_apply(state, plan, now)
    if state.phase == Phase.ACTION:
        call = _next_action(state, plan, now)
        if call is not None or state.status in TERMINAL_STATUSES:
            return state, call
    return state, _next_compensation(state, plan, now)


def _cancel_apply(state: SagaState, plan: SagaPlan, now: datetime) -> None:
    """An accepted cancel is a promise: the saga compensates and ends `cancelled`, even
    after its last action succeeded or while it already compensates for another cause."""
    message = "Cancelled on request."
    if state.phase == Phase.ACTION:
        index = min(state.current_step, len(plan.steps) - 1)  # past the end: the last one
        cause = _error(ErrorCode.CANCELLED, plan.steps[index].name, message)
        _compensation_begin(state, cause, now)
    elif (state.cause or {}).get("code") != ErrorCode.CANCELLED:
        # Compensating for another cause already (a race with the cancel): it ends cancelled.
        state.cause = _error(ErrorCode.CANCELLED, (state.cause or {}).get("step"), message)
        if (state.error or {}).get("code") != ErrorCode.COMPENSATION_FAILED:
            state.error = state.cause


def cancel_refusal(status: str, cancel_requested: bool) -> str | None:
    """Why a cancel cannot be accepted now (§9.1: HTTP 409), or None to accept it: only
    before compensation began, and only once."""
    if cancel_requested:
        return "A cancel was already accepted for this saga."
    if status not in CANCELLABLE_STATUSES:
        return f"Saga is {status}; only pending or running sagas can be cancelled."
    return None


def _next_action(state: SagaState, plan: SagaPlan, now: datetime) -> Call | None:
    index = state.current_step
    # Checked before completing too: a last action that succeeded only after the deadline
    # is compensated like the others (§6a).
    if state.deadline_at is not None and now >= state.deadline_at:
        name = plan.steps[min(index, len(plan.steps) - 1)].name
        message = "The saga deadline passed before its last action succeeded."
        _compensation_begin(state, _error(ErrorCode.TIMEOUT, name, message), now)
        return None
    if index >= len(plan.steps):
        _finish(state, SagaStatus.COMPLETED, None, now)
        return None
    return Call(Phase.ACTION, index, state.steps[index]["attempts"] + 1)


def _next_compensation(state: SagaState, plan: SagaPlan, now: datetime) -> Call | None:
    """Walk back from the current step to the next one to undo (strict reverse order)."""
    index = state.current_step
    while index >= 0:
        step = state.steps[index]
        if step["status"] in NEEDS_UNDO:
            if plan.steps[index].compensation is not None:
                state.current_step = index
                return Call(Phase.COMPENSATION, index, step["compensation_attempts"] + 1)
            step["status"] = StepStatus.COMPENSATED  # nothing to undo
        index -= 1
    state.current_step = 0
    cause = state.cause or _error(ErrorCode.STEP_FAILED, None, "Compensated.")
    final = SagaStatus.CANCELLED if cause["code"] == ErrorCode.CANCELLED else SagaStatus.COMPENSATED
    _finish(state, final, cause, now)
    return None


def call_start(state: SagaState, call: Call, now: datetime) -> SagaState:
    """Count the attempt and mark it in flight (persisted before the call is made)."""
    state = state.copy()
    step = state.steps[call.index]
    if call.phase == Phase.ACTION:
        step["attempts"] = call.attempt
        step["status"] = StepStatus.RUNNING
        state.status = SagaStatus.RUNNING
    else:
        step["compensation_attempts"] = call.attempt
        step["status"] = StepStatus.COMPENSATING
    step["in_flight"] = True
    state.started_at = state.started_at or now
    return state


def call_interrupted(state: SagaState) -> Call | None:
    """The call a lost worker left in flight, if any (its outcome is unknown)."""
    if state.status in TERMINAL_STATUSES or not 0 <= state.current_step < len(state.steps):
        return None
    step = state.steps[state.current_step]
    if not step.get("in_flight"):
        return None
    if state.phase == Phase.ACTION:
        return Call(Phase.ACTION, state.current_step, step["attempts"])
    return Call(Phase.COMPENSATION, state.current_step, step["compensation_attempts"])


def interruption_settle(
    state: SagaState,
    plan: SagaPlan,
    call: Call,
    now: datetime,
    rand: float,
    limit: int,
) -> tuple[SagaState, CallResult]:
    """A call a lost worker left in flight: sent again at once with the same attempt
    number, up to `limit` times per step and phase; one more counts as an uncertain
    failure of that attempt. Returns the state and the outcome to log for the call."""
    key = "interruptions" if call.phase == Phase.ACTION else "compensation_interruptions"
    step = state.steps[call.index]
    if step.get(key, 0) >= limit:
        return call_settle(state, plan, call, INTERRUPTED_FAILURE, now, rand), INTERRUPTED_FAILURE
    state = state.copy()
    step = state.steps[call.index]
    step.pop("in_flight", None)
    step[key] = step.get(key, 0) + 1
    attempts = "attempts" if call.phase == Phase.ACTION else "compensation_attempts"
    step[attempts] = call.attempt - 1  # the re-sent call takes this attempt's number again
    if call.phase == Phase.ACTION:
        step["uncertain"] = True  # it may have reached the participant
    state.next_attempt_at = now
    return state, INTERRUPTED


def call_settle(
    state: SagaState,
    plan: SagaPlan,
    call: Call,
    result: CallResult,
    now: datetime,
    rand: float,
) -> SagaState:
    """The state after a call's outcome: next step, a scheduled retry, or a failure."""
    state = state.copy()
    state.steps[call.index].pop("in_flight", None)
    state.next_attempt_at = now
    if call.phase == Phase.ACTION:
        _action_settle(state, plan, call, result, now, rand)
    else:
        _compensation_settle(state, plan, call, result, now, rand)
    return state


def _action_settle(state, plan, call, result, now, rand) -> None:
    step = state.steps[call.index]
    step["status_code"] = result.status_code
    if result.outcome == Outcome.SUCCEEDED:
        step.update(status=StepStatus.SUCCEEDED, response=result.response, error=None)
        state.current_step = call.index + 1
        return
    step["error"] = result.error
    # Sticky: a later rejection does not undo "may have happened".
    step["uncertain"] = step.get("uncertain", False) or result.uncertain
    policy = plan.steps[call.index].policy
    if result.outcome == Outcome.RETRYABLE_ERROR and step["attempts"] < policy.max_attempts:
        delay = retry_delay(policy, step["attempts"], retry_after=result.retry_after, rand=rand)
        due = now + timedelta(seconds=delay)
        # The deadline takes effect on time even when a retry would come later.
        if state.deadline_at is not None:
            due = min(due, state.deadline_at)
        state.next_attempt_at = due
        return
    cause = _error(ErrorCode.STEP_FAILED, step["name"], result.error)
    _compensation_begin(state, cause, now)


def _compensation_settle(state, plan, call, result, now, rand) -> None:
    step = state.steps[call.index]
    if result.outcome == Outcome.SUCCEEDED:
        step["status"] = StepStatus.COMPENSATED
        state.current_step = call.index - 1
        return
    used = step["compensation_attempts"] - step.get("retry_base", 0)
    policy = plan.steps[call.index].policy
    # Retried on any answer and any retryable failure (a refused connection included).
    made = result.status_code is not None or result.outcome == Outcome.RETRYABLE_ERROR
    if made and used < plan.compensation_attempts:
        delay = retry_delay(policy, used, retry_after=result.retry_after, rand=rand)
        state.next_attempt_at = now + timedelta(seconds=delay)
        return
    # Out of attempts, or a call that cannot be made (bad template or URL): stop the walk.
    step["status"] = StepStatus.COMPENSATION_FAILED
    step["error"] = result.error
    state.status = SagaStatus.FAILED
    state.error = _error(ErrorCode.COMPENSATION_FAILED, step["name"], result.error)
    state.finished_at = now
    state.next_attempt_at = None


def _compensation_begin(state: SagaState, cause: dict, now: datetime) -> None:
    state.status = SagaStatus.COMPENSATING
    state.phase = Phase.COMPENSATION
    state.cause = state.error = cause
    for step in state.steps:
        if step["status"] == StepStatus.PENDING:
            step["status"] = StepStatus.SKIPPED
        elif step["status"] == StepStatus.RUNNING and not _may_have_happened(step):
            step["status"] = StepStatus.FAILED  # every attempt certainly failed: nothing to undo
    state.current_step = min(state.current_step, len(state.steps) - 1)
    state.next_attempt_at = now


def _may_have_happened(step: dict) -> bool:
    # Every settled failure sets the mark; a running step without it was left by an older
    # version of the engine, which did not keep it: assume the worst.
    return step.get("uncertain", True) or bool(step.get("in_flight"))


def _finish(state: SagaState, status: str, error: dict | None, now: datetime) -> None:
    state.status = status
    state.error = error
    state.finished_at = now
    state.next_attempt_at = None


def _error(code: str, step: str | None, message: str | None) -> dict:
    return {"code": str(code), "step": step, "message": message or ""}
