"""The life of a saga as pure functions of its state: no database, no clock, no network.

    decide(state, plan, now)        -> (state, call | None)   settle, then name the next call
    call_start(state, call, now, fingerprint) -> state        count the attempt, mark it in flight
    call_settle(state, plan, call, result, now, rand) -> state  what the outcome means
    interruption_settle(state, plan, call, now, rand, limit) -> (state, result)  a dead caller
    (in decide) a callback applied, an async step waiting, or its async timeout (§9.4)
    (in decide) a parallel group's members: which to call next, its failure, its undo (§9.3)
    cancel_refusal(status, cancel_requested) -> reason | None   may a cancel be accepted
    pause_apply(state, now, request) / cancel_apply(state, now)   operator changes (repair.py)

Each change also appends its history events (DESIGN §9.2) to `state.events`; the store
writes them in the same transaction as the state and empties the list.
The executor persists each returned state with one fenced write (the store).
"""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sagas.engine.callbacks import callback_fate, waiting_until
from sagas.engine.outcomes import CallResult
from sagas.engine.plan import SagaPlan
from sagas.engine.retry import retry_delay
from sagas.models import (
    TERMINAL_STATUSES,
    ErrorCode,
    OnFailure,
    Outcome,
    Phase,
    SagaStatus,
    StepStatus,
)

# Steps whose action took, or may have taken, effect: they are compensated.
NEEDS_UNDO = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.RUNNING,
        StepStatus.COMPENSATING,
        StepStatus.COMPENSATION_FAILED,
        StepStatus.WAITING,  # accepted (202): it may have taken effect
    }
)
CANCELLABLE_STATUSES = frozenset({SagaStatus.PENDING, SagaStatus.RUNNING, SagaStatus.PAUSED})
# A saga no worker advances: finished, or waiting for an operator.
AT_REST = frozenset({*TERMINAL_STATUSES, SagaStatus.PAUSED})
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
    # An accepted pause not applied yet: {"actor", "key_id", "reason"} (models.py).
    pause_request: dict | None = None
    paused_at: datetime | None = None
    # Rewinding for a resume `from_step`: compensation walks back to this index, then the
    # saga runs forward again from it.
    rewind_step: int | None = None
    # History events of the changes since the last write (store: written with the state).
    events: list[dict] = field(default_factory=list)
    # A participant's callback not applied yet (callbacks.py), as the worker last read it:
    # parsed, and the column's text (the store's fence). decide sets `callback` to None
    # once it applied or discarded it; the store then clears the column.
    callback: dict | None = None
    callback_seen: str | None = None

    def copy(self) -> "SagaState":
        return replace(self, steps=[dict(step) for step in self.steps], events=list(self.events))

    def record(self, event: str, now: datetime, step: str | None = None, **details) -> None:
        """A system event of the history (the engine's own changes)."""
        self.events.append(history_event(event, now, step, details=details or None))


# The fields of SagaState a saga's row keeps (columns of the same names).
PERSISTED = (
    "status",
    "phase",
    "current_step",
    "steps",
    "error",
    "cause",
    "cancel_requested",
    "deadline_at",
    "next_attempt_at",
    "started_at",
    "finished_at",
    "pause_request",
    "paused_at",
    "rewind_step",
)


def state_of(values) -> SagaState:
    """A saga's state from its row's values (a mapping with the PERSISTED names)."""
    return SagaState(**{name: values[name] for name in PERSISTED})


def history_event(
    event: str,
    now: datetime,
    step: str | None = None,
    *,
    actor: str = "system",
    key_id: str = "",
    reason: str = "",
    details: dict | None = None,
) -> dict:
    return {
        "at": now,
        "event": event,
        "step": step,
        "actor": actor,
        "key_id": key_id,
        "reason": reason,
        "details": details,
    }


@dataclass(frozen=True)
class Call:
    phase: str
    index: int
    attempt: int  # counts the first call


def decide(state: SagaState, plan: SagaPlan, now: datetime) -> tuple[SagaState, Call | None]:
    """Apply every change that needs no call (finish, start compensating, skip a step with
    nothing to undo), then return the call to make now, or None (terminal or waiting)."""
    state = state.copy()
    if state.status in AT_REST:
        return state, None
    # A cancel, a pause or a callback cuts a wait short: each acts at once (§9.1, §9.2,
    # §9.4).
    applies = state.callback is not None and _callback_fate(state) == "apply"
    acting = state.phase == Phase.ACTION and (
        state.cancel_requested or state.pause_request or applies
    )
    # A group's members keep their own due times (`due_at`): decided below.
    grouped = in_group(state.steps, state.current_step)
    later = state.next_attempt_at is not None and state.next_attempt_at > now
    if later and not acting and not grouped:
        return state, None
    if state.cancel_requested:
        cancel_apply(state, now)
    if state.callback is not None:
        _callback_take(state, plan, now)
    if state.phase == Phase.COMPENSATION:
        call = _next_compensation(state, plan, now)
        if call is not None or state.phase == Phase.COMPENSATION or state.status in AT_REST:
            return state, call
        # A rewind ended: the saga runs forward again from `from_step`.
    if state.pause_request is not None:
        # No new call starts; paused once no member's call is in flight (§9.3).
        if not _in_flight(state, group_span(state.steps, state.current_step)):
            pause_apply(state, now, state.pause_request)
        return state, None
    if not grouped and _waits(state, plan, now):
        return state, None
    if state.status in AT_REST:  # the async timeout paused it (on_failure pause)
        return state, None
    if state.phase == Phase.COMPENSATION:  # the async timeout began compensation
        return state, _next_compensation(state, plan, now)
    call = _next_action(state, plan, now)
    # Still acting with no call: a group's members are in flight or wait for their time.
    if call is not None or state.status in AT_REST or state.phase == Phase.ACTION:
        return state, call
    return state, _next_compensation(state, plan, now)


def cancel_apply(state: SagaState, now: datetime) -> None:
    """An accepted cancel is a promise: the saga compensates and ends `cancelled`, even
    after its last action succeeded, while paused, rewinding, or while it already
    compensates for another cause."""
    message = "Cancelled on request."
    if state.phase == Phase.ACTION or state.rewind_step is not None:
        state.rewind_step = None  # a rewind stops: every step done so far is undone
        state.paused_at = None
        index = min(state.current_step, len(state.steps) - 1)  # past the end: the last one
        cause = _error(ErrorCode.CANCELLED, state.steps[index]["name"], message)
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
        return f"Saga is {status}; only pending, running or paused sagas can be cancelled."
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
    if in_group(state.steps, index):
        return _group_next(state, plan, index, now)
    return Call(Phase.ACTION, index, state.steps[index]["attempts"] + 1)


def _next_compensation(state: SagaState, plan: SagaPlan, now: datetime) -> Call | None:
    """Walk back from the current step to the next one to undo (strict reverse order):
    to the first step, or when rewinding to `rewind_step`, which then runs again."""
    floor = state.rewind_step or 0
    index = state.current_step
    while index >= floor:
        if in_group(state.steps, index):
            span = group_span(state.steps, index)
            call, done = _group_undo(state, plan, span, now)
            if not done:
                if state.status not in AT_REST:  # failed: it stays at the failed member
                    state.current_step = span.start
                return call
            index = span.start - 1
            continue
        step = state.steps[index]
        if needs_undo(step):
            if plan.steps[index].compensation is not None:
                state.current_step = index
                return Call(Phase.COMPENSATION, index, step["compensation_attempts"] + 1)
            step["status"] = StepStatus.COMPENSATED  # nothing to undo
        index -= 1
    if state.rewind_step is not None:
        _rewind_end(state, now)
        return None
    state.current_step = 0
    cause = state.cause or _error(ErrorCode.STEP_FAILED, None, "Compensated.")
    final = SagaStatus.CANCELLED if cause["code"] == ErrorCode.CANCELLED else SagaStatus.COMPENSATED
    _finish(state, final, cause, now)
    return None


def needs_undo(step: dict) -> bool:
    """Its action took, or may have taken, effect: it is compensated. A step paused after
    an uncertain final failure shows `failed` but keeps its `uncertain` mark."""
    if step["status"] == StepStatus.FAILED:
        return bool(step.get("uncertain"))
    return step["status"] in NEEDS_UNDO


def _rewind_end(state: SagaState, now: datetime) -> None:
    """Every step from `rewind_step` on was undone: they run again, each started one as
    its next run (a new Idempotency-Key, §9.2)."""
    floor = state.rewind_step
    for index in range(floor, len(state.steps)):
        state.steps[index] = step_rerun(state.steps[index], keep_uncertain=False)
    state.rewind_step = None
    state.status = SagaStatus.RUNNING
    state.phase = Phase.ACTION
    state.current_step = floor
    state.error = state.cause = None
    state.next_attempt_at = now


def step_run(step: dict) -> int:
    return step.get("run", 1)


def step_rerun(step: dict, *, keep_uncertain: bool) -> dict:
    """The step as it starts again: counters and result cleared, its next run if it had
    started (a run is each time a step is started, §9.2)."""
    started = step["status"] not in (StepStatus.PENDING, StepStatus.SKIPPED) or step["attempts"]
    fresh = {
        "name": step["name"],
        "status": StepStatus.PENDING,
        "attempts": 0,
        "compensation_attempts": 0,
        "response": None,
        "status_code": None,
        "error": None,
        "run": step_run(step) + 1 if started else step_run(step),
    }
    if step.get("group"):
        fresh["group"] = step["group"]
    if keep_uncertain and step.get("uncertain"):
        fresh["uncertain"] = True  # an earlier run may have taken effect
    return fresh


def key_run(step: dict, fingerprint: str | None) -> int:
    """The run whose Idempotency-Key a call of the step carries: its own, except after a
    plain resume of an uncertain step whose request is unchanged, which reuses the key of
    the uncertain attempt so the participant can deduplicate (§9.2)."""
    reuse = step.get("reuse_key")
    if reuse and fingerprint is not None and reuse["fingerprint"] == fingerprint:
        return reuse["run"]
    return step.get("key_run") or step_run(step)


def call_start(
    state: SagaState, call: Call, now: datetime, fingerprint: str | None = None
) -> SagaState:
    """Count the attempt and mark it in flight (persisted before the call is made).
    `fingerprint`: of the request about to be sent (calls.py), None when none is."""
    state = state.copy()
    step = state.steps[call.index]
    step.pop("due_at", None)  # a group member's retry time: this is that retry
    if call.phase == Phase.ACTION:
        step["key_run"] = key_run(step, fingerprint)
        step.pop("reuse_key", None)
        if fingerprint is not None:
            step["fingerprint"] = fingerprint
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


def calls_interrupted(state: SagaState) -> list[Call]:
    """Every call a lost worker left in flight: the one of call_interrupted, or each of a
    parallel group's members' (their `in_flight` marks say which phase each was in)."""
    if state.status in TERMINAL_STATUSES or not in_group(state.steps, state.current_step):
        call = call_interrupted(state)
        return [] if call is None else [call]
    calls = []
    for index in group_span(state.steps, state.current_step):
        step = state.steps[index]
        mark = step.get("in_flight")
        if not mark:
            continue
        phase = mark.get("phase", state.phase) if isinstance(mark, dict) else state.phase
        if phase == Phase.ACTION:
            calls.append(Call(Phase.ACTION, index, step["attempts"]))
        else:
            calls.append(Call(Phase.COMPENSATION, index, step["compensation_attempts"]))
    return calls


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
    if step.get("group") and (state.phase != Phase.ACTION or state.status in AT_REST):
        _member_late_settle(state, call, result, now)
        return
    step["status_code"] = result.status_code
    timeout = plan.steps[call.index].async_timeout
    if result.outcome == Outcome.SUCCEEDED and result.status_code == 202 and timeout is not None:
        _wait_begin(state, call, result, timeout, now)
        return
    if result.outcome == Outcome.SUCCEEDED:
        step.update(status=StepStatus.SUCCEEDED, response=result.response, error=None)
        state.current_step = _after_success(state, call.index)
        state.record("step_succeeded", now, step["name"], **_call_details(call, step, result))
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
        if step.get("group"):
            step["due_at"] = due.isoformat()  # its own schedule; the group decides (§9.3)
        else:
            state.next_attempt_at = due
        return
    _action_fail(state, plan, call.index, result.error, now, _call_details(call, step, result))


def _action_fail(state, plan, index: int, error: str | None, now, details: dict) -> None:
    """The step's action failed for good: pause (on_failure pause) or compensate."""
    step = state.steps[index]
    if step.get("group"):
        _member_fail(state, plan, index, error, now, details)
        return
    state.record("step_failed", now, step["name"], **details)
    cause = _error(ErrorCode.STEP_FAILED, step["name"], error)
    # A pause asked for while the step ran wins too: nothing is undone before the operator
    # has looked (the pause is theirs in the history).
    request = state.pause_request
    if plan.steps[index].on_failure == OnFailure.PAUSE or request is not None:
        step["status"] = StepStatus.FAILED  # `uncertain` still says if it may have happened
        _pause(state, now, cause, _pause_event(now, step["name"], request))
        return
    _compensation_begin(state, cause, now)


# Parallel groups (§9.3) ---------------------------------------------------------------
# The members are consecutive steps with the same `group`; while the saga is at a group,
# `current_step` is its first member. Each member keeps its own retry time (`due_at`),
# and the saga is due at the earliest of them when none of its calls is in flight.


def in_group(steps: list[dict], index: int) -> bool:
    return 0 <= index < len(steps) and bool(steps[index].get("group"))


def group_span(steps: list[dict], index: int) -> range:
    """The indices of the group the step at `index` is a member of; for an ordinary step
    (or an index past the end), that index alone."""
    if not in_group(steps, index):
        return range(index, index + 1)
    group = steps[index]["group"]
    start, end = index, index + 1
    while start > 0 and steps[start - 1].get("group") == group:
        start -= 1
    while end < len(steps) and steps[end].get("group") == group:
        end += 1
    return range(start, end)


def _in_flight(state: SagaState, span: range) -> bool:
    return any(state.steps[i].get("in_flight") for i in span if 0 <= i < len(state.steps))


def _due_at(step: dict) -> datetime | None:
    due = step.get("due_at")
    return None if due is None else datetime.fromisoformat(due)


def _after_success(state: SagaState, index: int) -> int:
    """The current step after the step at `index` succeeded: the next one; for a member,
    the step after its group once every member has succeeded, else still the group."""
    if not in_group(state.steps, index):
        return index + 1
    span = group_span(state.steps, index)
    if all(state.steps[i]["status"] == StepStatus.SUCCEEDED for i in span):
        return span.stop
    return span.start


def _group_next(state: SagaState, plan: SagaPlan, index: int, now: datetime) -> Call | None:
    """The next member call to start: every member not in flight whose time has come, one
    at a time (the executor starts each and asks again). None: wait — for the calls in
    flight, or until `next_attempt_at`, the earliest member's retry or async timeout. A
    member that failed for good stops the group once no call is in flight."""
    span = group_span(state.steps, index)
    failed = next((i for i in span if state.steps[i]["status"] == StepStatus.FAILED), None)
    if failed is not None:
        if not _in_flight(state, span):
            _group_fail(state, plan, failed, now)
        return None
    dues = []
    for i in span:
        step = state.steps[i]
        if step.get("in_flight") or step["status"] == StepStatus.SUCCEEDED:
            continue
        due = waiting_until(step) if step["status"] == StepStatus.WAITING else _due_at(step)
        if due is not None and due > now:
            dues.append(due)
            continue
        if step["status"] == StepStatus.WAITING:
            _async_timeout(state, plan, i, now)
            return _group_next(state, plan, index, now) if state.phase == Phase.ACTION else None
        return Call(Phase.ACTION, i, step["attempts"] + 1)
    if all(state.steps[i]["status"] == StepStatus.SUCCEEDED for i in span):
        state.current_step = span.stop  # e.g. a resume skipped the last one
        return _next_action(state, plan, now)
    if state.deadline_at is not None:
        dues.append(state.deadline_at)
    state.next_attempt_at = min(dues) if dues else None
    return None


def _member_fail(state, plan, index: int, error: str | None, now, details: dict) -> None:
    """A member failed for good: its siblings make no further attempts; once none of their
    calls is in flight the group fails (_group_fail)."""
    step = state.steps[index]
    state.record("step_failed", now, step["name"], **details)
    step.pop("due_at", None)
    step.update(status=StepStatus.FAILED, error=error)  # `uncertain` says if it may have
    if not _in_flight(state, group_span(state.steps, index)):
        _group_fail(state, plan, index, now)


def _group_fail(state: SagaState, plan: SagaPlan, index: int, now: datetime) -> None:
    """The group failed (its first failed member's error): pause (that member's
    on_failure, or a pause asked for meanwhile) or compensate."""
    step = state.steps[index]
    cause = _error(ErrorCode.STEP_FAILED, step["name"], step["error"])
    request = state.pause_request
    if plan.steps[index].on_failure == OnFailure.PAUSE or request is not None:
        _pause(state, now, cause, _pause_event(now, step["name"], request))
        return
    _compensation_begin(state, cause, now)


def _member_late_settle(state: SagaState, call: Call, result: CallResult, now) -> None:
    """A member's call that ended after the group stopped (a cancel, the deadline): its
    outcome is recorded, no retry; the walk back compensates it if it took effect."""
    step = state.steps[call.index]
    step["status_code"] = result.status_code
    details = _call_details(call, step, result)
    if result.outcome == Outcome.SUCCEEDED and result.status_code != 202:
        step.update(status=StepStatus.SUCCEEDED, response=result.response, error=None)
        state.record("step_succeeded", now, step["name"], **details)
        return
    accepted = result.outcome == Outcome.SUCCEEDED  # a 202: it may take effect later
    error = "accepted (202) after the saga stopped" if accepted else result.error
    step["uncertain"] = step.get("uncertain", False) or result.uncertain or accepted
    step.update(status=StepStatus.FAILED, error=error)
    state.record("step_failed", now, step["name"], **details)


def _group_undo(state: SagaState, plan: SagaPlan, span: range, now: datetime):
    """(call, done) for undoing a group: its members that succeeded or may have are
    compensated concurrently (one call returned at a time); done once every one is and no
    call of theirs is in flight. A member whose compensation failed for good fails the
    saga once its siblings' calls in flight are recorded."""
    busy = _in_flight(state, span)
    failed = next(
        (i for i in span if state.steps[i]["status"] == StepStatus.COMPENSATION_FAILED), None
    )
    if failed is not None:
        if not busy:
            _compensation_fail(state, failed, now)
        return None, False
    dues = []
    for i in span:
        step = state.steps[i]
        if step.get("in_flight") or not needs_undo(step):
            continue
        if plan.steps[i].compensation is None:
            step["status"] = StepStatus.COMPENSATED  # nothing to undo
            continue
        due = _due_at(step)
        if due is not None and due > now:
            dues.append(due)
            continue
        return Call(Phase.COMPENSATION, i, step["compensation_attempts"] + 1), False
    if busy or dues:
        state.next_attempt_at = min(dues) if dues else None
        return None, False
    return None, True


# Asynchronous steps (§9.4) ------------------------------------------------------------


def _wait_begin(state, call: Call, result: CallResult, timeout: float, now) -> None:
    """A 202 of an asynchronous action: the step waits for its callback, the saga is due
    again at the async timeout (or its deadline, if sooner); no worker holds it."""
    step = state.steps[call.index]
    until = now + timedelta(seconds=timeout)
    step.update(status=StepStatus.WAITING, error=None, waiting_until=until.isoformat())
    state.next_attempt_at = until if state.deadline_at is None else min(until, state.deadline_at)
    details = _call_details(call, step, result) | {"until": step["waiting_until"]}
    state.record("step_waiting", now, step["name"], **details)


def _callback_fate(state: SagaState) -> str:
    fate = callback_fate(state.steps, state.callback)
    if fate == "keep" and state.phase != Phase.ACTION:
        return "discard"  # its step is being undone: the call will not be sent again
    return fate


def _callback_take(state: SagaState, plan: SagaPlan, now: datetime) -> None:
    """Apply the pending callback if its step waits for it; keep it while the step's call
    is still to settle; else drop it (the store clears the column)."""
    fate = _callback_fate(state)
    if fate == "keep":
        return
    record, state.callback = state.callback, None
    if fate == "apply":
        names = [step["name"] for step in state.steps]
        _callback_apply(state, plan, names.index(record["step"]), record, now)


def _callback_apply(state, plan, index: int, record: dict, now) -> None:
    """`succeeded`: the step succeeded with the callback's response. `failed`: a permanent
    failure (uncertain only if an earlier attempt was). A saga already compensating (a
    cancel came first) keeps a success's response for its compensation's templates."""
    step = state.steps[index]
    step["callback"] = {"outcome": record["outcome"], "response": record["response"]}
    succeeded = record["outcome"] == "succeeded"
    if state.phase != Phase.ACTION:
        if succeeded:
            step.update(status=StepStatus.SUCCEEDED, response=record["response"])
        return
    step.pop("waiting_until", None)
    state.next_attempt_at = now
    if succeeded:
        step.update(status=StepStatus.SUCCEEDED, response=record["response"], error=None)
        state.current_step = _after_success(state, index)
        state.record("step_succeeded", now, step["name"], **_async_details(step, "callback"))
        return
    error = f"callback: {record.get('error') or 'the participant reported a failure'}"
    # Not uncertain unless an earlier attempt was (the mark is sticky, and every settled
    # failure carries it: certain_failures_mark reads it).
    step.update(status=StepStatus.FAILED, error=error, uncertain=step.get("uncertain", False))
    _action_fail(state, plan, index, error, now, _async_details(step, "callback", error))


def _waits(state: SagaState, plan: SagaPlan, now: datetime) -> bool:
    """True while the current step waits for its callback (the saga is due again at its
    async timeout); at the timeout the step fails, uncertain (it was accepted)."""
    index = state.current_step
    if index >= len(state.steps) or state.steps[index]["status"] != StepStatus.WAITING:
        return False
    if state.deadline_at is not None and now >= state.deadline_at:
        return False  # _next_action compensates for the saga deadline
    until = waiting_until(state.steps[index])
    if until is not None and now < until:
        deadline = state.deadline_at
        state.next_attempt_at = until if deadline is None else min(until, deadline)
        return True
    _async_timeout(state, plan, index, now)
    return False


def _async_timeout(state: SagaState, plan: SagaPlan, index: int, now: datetime) -> None:
    """No callback in time: a failure of the step, uncertain (it was accepted)."""
    step = state.steps[index]
    timeout = plan.steps[index].async_timeout
    error = f"no callback within {timeout:g} s" if timeout else "no callback in time"
    step.pop("waiting_until", None)
    step.update(status=StepStatus.FAILED, error=error, uncertain=True)
    state.next_attempt_at = now
    _action_fail(state, plan, index, error, now, _async_details(step, "timeout", error))


def _async_details(step: dict, via: str, error: str | None = None) -> dict:
    """The history details of an asynchronous step's outcome (its 202's attempt)."""
    details = {"phase": str(Phase.ACTION), "run": step_run(step), "attempt": step["attempts"]}
    details |= {"status_code": step.get("status_code"), "via": via}
    return details if error is None else details | {"error": error}


def _call_details(call: Call, step: dict, result: CallResult) -> dict:
    details = {"phase": str(call.phase), "run": step_run(step), "attempt": call.attempt}
    details["status_code"] = result.status_code
    if result.outcome != Outcome.SUCCEEDED:
        details["error"] = result.error
    return details


def pause_apply(state: SagaState, now: datetime, request: dict) -> None:
    """An operator's pause: the saga stops before its next action (§9.2)."""
    _pause(state, now, None, _pause_event(now, None, request))


def _pause_event(now: datetime, step: str | None, request: dict | None) -> dict:
    """The `paused` event: the operator's when one asked for it, else the system's."""
    if request is None:
        return history_event("paused", now, step)
    return history_event(
        "paused",
        now,
        step,
        actor=request.get("actor", "internal"),
        key_id=request.get("key_id", ""),
        reason=request.get("reason", ""),
    )


def _pause(state: SagaState, now: datetime, error: dict | None, event: dict) -> None:
    state.status = SagaStatus.PAUSED
    state.error = error
    state.paused_at = now
    state.next_attempt_at = None
    if error is not None:
        event["details"] = {"error": error}
    state.events.append(event)


def _compensation_settle(state, plan, call, result, now, rand) -> None:
    step = state.steps[call.index]
    member = bool(step.get("group"))
    if result.outcome == Outcome.SUCCEEDED:
        step["status"] = StepStatus.COMPENSATED
        if not member:  # a group's walk goes on once every member is done
            state.current_step = call.index - 1
        state.record("step_succeeded", now, step["name"], **_call_details(call, step, result))
        return
    used = step["compensation_attempts"] - step.get("retry_base", 0)
    policy = plan.steps[call.index].policy
    # Retried on any answer and any retryable failure (a refused connection included).
    made = result.status_code is not None or result.outcome == Outcome.RETRYABLE_ERROR
    if made and used < plan.compensation_attempts:
        delay = retry_delay(policy, used, retry_after=result.retry_after, rand=rand)
        if member:
            step["due_at"] = (now + timedelta(seconds=delay)).isoformat()
        else:
            state.next_attempt_at = now + timedelta(seconds=delay)
        return
    # Out of attempts, or a call that cannot be made (bad template or URL): stop the walk.
    state.record("step_failed", now, step["name"], **_call_details(call, step, result))
    step["status"] = StepStatus.COMPENSATION_FAILED
    step["error"] = result.error
    if member:
        # The saga fails once its siblings' calls in flight are recorded (_group_undo).
        if not _in_flight(state, group_span(state.steps, call.index)):
            _compensation_fail(state, call.index, now)
        return
    _compensation_fail(state, call.index, now)


def _compensation_fail(state: SagaState, index: int, now: datetime) -> None:
    """A compensation failed for good: the saga is `failed` (retry resumes at `index`)."""
    step = state.steps[index]
    state.current_step = index
    state.status = SagaStatus.FAILED
    state.error = _error(ErrorCode.COMPENSATION_FAILED, step["name"], step["error"])
    state.finished_at = now
    state.next_attempt_at = None
    state.record("finished", now, status=str(state.status), error=state.error["code"])


def _compensation_begin(state: SagaState, cause: dict, now: datetime) -> None:
    state.record("compensating", now, cause["step"], cause=cause["code"])
    state.status = SagaStatus.COMPENSATING
    state.phase = Phase.COMPENSATION
    state.cause = state.error = cause
    for step in state.steps:
        if step["status"] == StepStatus.PENDING:
            step["status"] = StepStatus.SKIPPED
        elif step["status"] == StepStatus.WAITING:
            step["uncertain"] = True  # accepted, its outcome unknown: undone as uncertain
        step.pop("due_at", None)  # a group member's retry is not made (§9.3)
    certain_failures_mark(state.steps)
    state.current_step = min(state.current_step, len(state.steps) - 1)
    state.next_attempt_at = now


def certain_failures_mark(steps: list[dict]) -> None:
    """A running step whose every attempt certainly failed has nothing to undo: failed."""
    for step in steps:
        if step["status"] == StepStatus.RUNNING and not _may_have_happened(step):
            step["status"] = StepStatus.FAILED


def _may_have_happened(step: dict) -> bool:
    # Every settled failure sets the mark; a running step without it was left by an older
    # version of the engine, which did not keep it: assume the worst.
    return step.get("uncertain", True) or bool(step.get("in_flight"))


def _finish(state: SagaState, status: str, error: dict | None, now: datetime) -> None:
    code = None if error is None else error["code"]
    state.record("finished", now, status=str(status), error=code)
    state.status = status
    state.error = error
    state.finished_at = now
    state.next_attempt_at = None


def _error(code: str, step: str | None, message: str | None) -> dict:
    return {"code": str(code), "step": step, "message": message or ""}
