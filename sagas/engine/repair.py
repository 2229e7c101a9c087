"""Operator repair as pure functions of a saga's state (DESIGN §9.2): may it be paused or
resumed, and the state a resume leaves. No database, no clock (control.py persists).

    pause_refusal(status, cancel_requested, pause_request) -> reason | None
    resume_refusal(status) -> reason | None
    resume_apply(state, resume, now)   paused → running (or rewinding); raises Invalid

A resume continues where the saga stopped, `skip`s the step it stopped at, or rewinds
`from_step`: the steps from where it stopped back to that one that succeeded or may have
succeeded are compensated first (reverse order), then the saga runs forward from it. Each
step started again is its next run, with its own Idempotency-Key (transitions.key_run).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sagas.engine.callbacks import waiting_until
from sagas.engine.transitions import (
    SagaState,
    certain_failures_mark,
    group_span,
    needs_undo,
    step_rerun,
    step_run,
)
from sagas.errors import Invalid
from sagas.models import Phase, SagaStatus, StepStatus

PAUSABLE_STATUSES = frozenset({SagaStatus.PENDING, SagaStatus.RUNNING})


@dataclass(frozen=True)
class Resume:
    from_step: str | None = None
    # {"response": …}: the step where the saga stopped succeeds with that response.
    skip: dict | None = None
    # An input_patch was applied: the request of the stopped step may differ.
    patched: bool = False

    @property
    def plain(self) -> bool:
        return self.from_step is None and self.skip is None and not self.patched


def pause_refusal(status: str, cancel_requested: bool, pause_request: Any) -> str | None:
    """Why a pause cannot be accepted now (HTTP 409), or None to accept it."""
    if cancel_requested:
        return "A cancel was already accepted for this saga."
    if status == SagaStatus.PAUSED:
        return "Saga is already paused."
    if pause_request is not None:
        return "A pause was already accepted for this saga."
    if status not in PAUSABLE_STATUSES:
        return f"Saga is {status}; only pending or running sagas can be paused."
    return None


def resume_refusal(status: str) -> str | None:
    if status != SagaStatus.PAUSED:
        return f"Saga is {status}; only paused sagas can be resumed."
    return None


def resume_apply(state: SagaState, resume: Resume, now: datetime) -> None:
    """paused → running: checks everything first (Invalid, nothing changed), then moves the
    deadline on by the paused time and continues, skips or rewinds."""
    stopped = state.current_step
    target = _resume_target(state, resume, stopped)
    if state.paused_at is not None:
        _clocks_moved(state, max(now - state.paused_at, timedelta(0)))
    state.paused_at = state.pause_request = None
    state.status = SagaStatus.RUNNING if state.started_at else SagaStatus.PENDING
    state.error = state.cause = None
    state.next_attempt_at = now
    if resume.skip is not None:
        _skip(state, stopped, resume.skip.get("response"))
    elif target is not None:
        _rewind(state, target, stopped)
    else:
        _continue(state, stopped, resume)


def _clocks_moved(state: SagaState, paused_for: timedelta) -> None:
    """Neither the saga deadline nor a waiting step's async timeout runs while paused."""
    if state.deadline_at is not None:
        state.deadline_at += paused_for
    for step in state.steps:
        until = waiting_until(step)
        if step["status"] == StepStatus.WAITING and until is not None:
            step["waiting_until"] = (until + paused_for).isoformat()


def _resume_target(state: SagaState, resume: Resume, stopped: int) -> int | None:
    """The index `from_step` names, after checking the request can be done."""
    if resume.skip is not None:
        if resume.from_step is not None:
            raise Invalid("skip and from_step cannot be combined.", field="skip")
        if stopped >= len(state.steps):
            raise Invalid("Nothing to skip: every step has succeeded.", field="skip")
        _skipped(state, stopped)
        return None
    if resume.from_step is None:
        return None
    names = [step["name"] for step in state.steps]
    groups = [step.get("group") for step in state.steps]
    if resume.from_step not in names and resume.from_step not in groups:
        raise Invalid(f"No step named {resume.from_step!r} in this saga.", field="from_step")
    found = names.index(resume.from_step) if resume.from_step in names else None
    # A member or its group: the whole group runs again (§9.3), from its first member.
    index = group_span(
        state.steps, found if found is not None else groups.index(resume.from_step)
    ).start
    if index > stopped:
        stopped_at = names[stopped] if stopped < len(names) else "the end"
        raise Invalid(
            f"{resume.from_step!r} comes after the step where the saga stopped ({stopped_at}).",
            field="from_step",
        )
    return index


def _skipped(state: SagaState, stopped: int) -> int:
    """The step a `skip` marks succeeded: the one the saga stopped at; in a group, its one
    failed member (none or several: 400)."""
    span = group_span(state.steps, stopped)
    if len(span) == 1:
        return stopped
    failed = [i for i in span if state.steps[i]["status"] == StepStatus.FAILED]
    if len(failed) != 1:
        raise Invalid(
            f"skip needs exactly one failed member of group {state.steps[stopped]['group']!r}"
            f" ({len(failed)} failed).",
            field="skip",
        )
    return failed[0]


def _skip(state: SagaState, stopped: int, response: Any) -> None:
    skipped = _skipped(state, stopped)
    step = state.steps[skipped]
    step.update(status=StepStatus.SUCCEEDED, response=response, error=None, status_code=None)
    step.pop("reuse_key", None)
    span = group_span(state.steps, stopped)
    done = all(state.steps[i]["status"] == StepStatus.SUCCEEDED for i in span)
    state.current_step = span.stop if done else span.start


def _rewind(state: SagaState, target: int, stopped: int) -> None:
    last = group_span(state.steps, min(stopped, len(state.steps) - 1))[-1]
    certain_failures_mark(state.steps[target : last + 1])
    if any(needs_undo(step) for step in state.steps[target : last + 1]):
        # Undo first (transitions._next_compensation walks back to `rewind_step`).
        state.phase = Phase.COMPENSATION
        state.rewind_step = target
        state.current_step = last
        return
    for index in range(target, len(state.steps)):
        state.steps[index] = step_rerun(state.steps[index], keep_uncertain=False)
    state.current_step = target


def _continue(state: SagaState, stopped: int, resume: Resume) -> None:
    """A failed step runs again with a fresh budget as its next run; a step paused between
    retries goes on with its run, unless the input changed under it."""
    if stopped >= len(state.steps):
        return
    # In a group, each failed member runs again (§9.3).
    for index in group_span(state.steps, stopped):
        step = state.steps[index]
        if step["status"] == StepStatus.FAILED or (
            step["status"] == StepStatus.RUNNING and resume.patched
        ):
            fresh = step_rerun(step, keep_uncertain=True)
            if resume.plain and step.get("uncertain") and step.get("fingerprint"):
                # The same request again reuses the uncertain attempt's key (§9.2).
                run = step.get("key_run") or step_run(step)
                fresh["reuse_key"] = {"run": run, "fingerprint": step["fingerprint"]}
            state.steps[index] = fresh
