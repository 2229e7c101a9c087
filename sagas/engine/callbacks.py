"""Asynchronous steps' callbacks (DESIGN §9.4) as pure functions: the token, the URL, and
what a callback may do to a step. No database, no clock, no settings (the caller passes
the secret and the time).

    callback_token(secret, saga_id, step, run) -> str      HMAC-SHA256 of "<saga>:<step>:<run>"
    token_matches(secret, saga_id, step, run, presented) -> bool   constant-time
    callback_verdict(...) -> Verdict     record (202) | duplicate (200) | conflict (409)
    callback_fate(steps, record) -> "apply" | "keep" | "discard"   for the worker

A callback is recorded in the saga row's `callback` column (models.py), never in `steps`:
a worker holding the saga writes `steps` whole, and its fenced write checks the column is
as it last read it, so a callback that arrives while the call is in flight is neither
overwritten nor missed (transitions.decide applies it once the 202 is recorded).
"""

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from sagas.jsonutil import canonical_json
from sagas.models import SagaStatus, StepStatus

OUTCOMES = ("succeeded", "failed")
# Saga statuses in which a step can wait for its callback (paused: kept, applied at resume).
ACCEPTING_STATUSES = frozenset({SagaStatus.RUNNING, SagaStatus.PAUSED})
RECORD = "record"
DUPLICATE = "duplicate"
CONFLICT = "conflict"


def callback_token(secret: str, saga_id: str, step: str, run: int) -> str:
    """The credential of one run of one step: derived, so nothing secret is stored."""
    message = f"{saga_id}:{step}:{run}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def token_matches(secret: str, saga_id: str, step: str, run: int, presented: str | None) -> bool:
    expected = callback_token(secret, saga_id, step, run)
    return hmac.compare_digest(expected.encode(), (presented or "").encode())


def callback_url(public_url: str, saga_id: str, step: str) -> str:
    return f"{public_url.rstrip('/')}/api/sagas/{saga_id}/steps/{step}/callback/"


def callback_record(
    *, step: str, run: int, outcome: str, response: Any, error: str | None, now: datetime
) -> dict:
    return {
        "step": step,
        "run": run,
        "outcome": outcome,
        "response": response,
        "error": error,
        "at": now.isoformat(),
    }


def callback_text(record: dict) -> str:
    """The column's text: canonical, so the same record always compares equal."""
    return canonical_json(record)


def callback_parse(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)


def waiting_until(step: dict) -> datetime | None:
    """When a waiting step's callback is due at the latest (its async timeout)."""
    until = step.get("waiting_until")
    return None if until is None else parse_datetime(until)


@dataclass(frozen=True)
class Verdict:
    kind: str  # RECORD (202), DUPLICATE (200) or CONFLICT (409)
    reason: str = ""


def callback_verdict(
    *,
    saga_status: str,
    cancel_requested: bool,
    step: dict,
    pending: dict | None,
    outcome: str,
    response: Any,
    now: datetime,
) -> Verdict:
    """What a callback with a valid token does: `step` is the step's state, `pending` the
    saga's unapplied callback (any step's). Recorded when the step waits for it or its call
    is in flight (the 202 not recorded yet); the same one again is a duplicate; anything
    else conflicts."""
    recorded = _recorded(step, pending)
    if recorded is not None:
        same = recorded["outcome"] == outcome and recorded["response"] == response
        if same:
            return Verdict(DUPLICATE)
        return Verdict(CONFLICT, "A different outcome was already recorded for this step.")
    if cancel_requested or saga_status not in ACCEPTING_STATUSES:
        return Verdict(CONFLICT, f"Saga is {saga_status}; the step no longer waits for it.")
    if step["status"] == StepStatus.WAITING:
        until = waiting_until(step)
        if until is not None and now >= until:
            return Verdict(CONFLICT, "The step timed out waiting for its callback.")
        return Verdict(RECORD)
    in_flight = step.get("in_flight")
    action_in_flight = isinstance(in_flight, dict) and in_flight.get("phase") == "action"
    if step["status"] == StepStatus.RUNNING and action_in_flight:
        return Verdict(RECORD)
    return Verdict(CONFLICT, f"Step is {step['status']}: neither waiting nor in flight.")


def _recorded(step: dict, pending: dict | None) -> dict | None:
    """The callback already recorded for this run of the step: pending, or applied."""
    run = step.get("run", 1)
    if pending is not None and pending["step"] == step["name"] and pending["run"] == run:
        return pending
    return step.get("callback")  # cleared when the step runs again (transitions.step_rerun)


def callback_fate(steps: list[dict], record: dict) -> str:
    """What the worker does with a pending callback: apply it (its step waits for it),
    keep it (the step's call is still to settle), or discard it (it no longer matters)."""
    step = next((step for step in steps if step["name"] == record["step"]), None)
    if step is None or step.get("run", 1) != record["run"]:
        return "discard"
    if step["status"] == StepStatus.WAITING:
        return "apply"
    if step["status"] == StepStatus.RUNNING:
        return "keep"  # the call will be (re)sent and may answer 202
    return "discard"
