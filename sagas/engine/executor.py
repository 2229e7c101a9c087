"""Runs one claimed saga as far as it can go now: call after call, each transition
committed (fenced) before the next call starts, never a call inside a transaction.

Stops when the saga finishes, waits (a retry is scheduled in the database, the lease is
released, no thread sleeps through a backoff), loses its lease, or the worker stops.

A definition with parallel groups (DESIGN §9.3) runs in `_grouped_run`: the members'
calls go out together on a small thread pool (bounded per process), while this thread —
the saga's one writer — records every opening and outcome with its own fenced write.
"""

import contextvars
import logging
import random
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from saga_orchestrator.request_context import reset_request_id, set_request_id
from sagas.engine.call_log import logged_body, logged_headers
from sagas.engine.callbacks import callback_parse
from sagas.engine.calls import CallbackConfig, call_prepare, call_spec, request_fingerprint
from sagas.engine.outcomes import CallResult
from sagas.engine.participants import ParticipantRequest, participant_call
from sagas.engine.plan import SagaPlan, plan_build, steps_initial
from sagas.engine.store import (
    AttemptClose,
    AttemptOpen,
    Claimed,
    ControlRequested,
    GroupWriter,
    Lease,
    LeaseLost,
    transition_record,
)
from sagas.engine.transitions import (
    Call,
    SagaState,
    call_interrupted,
    call_settle,
    call_start,
    calls_interrupted,
    decide,
    in_group,
    interruption_settle,
)
from sagas.models import SagaDefinition

logger = logging.getLogger("sagas.engine")
# The HTTP calls of parallel groups' members, for every saga of the process: a group
# waits for a thread rather than a process opening hundreds of connections at once.
GROUP_CALL_THREADS = 16
# How long the saga's thread waits for a member's call before looking again (a stop).
GROUP_WAIT_SECONDS = 1.0


class PlanCache:
    """Definitions are immutable: each is read once per process."""

    def __init__(self):
        self._plans: dict[int, SagaPlan] = {}

    def get(self, definition_id: int) -> SagaPlan:
        plan = self._plans.get(definition_id)
        if plan is None:
            definition = SagaDefinition.objects.get(id=definition_id)
            plan = plan_build(
                definition=definition.name,
                steps=definition.steps,
                retry_attempts=settings.SAGA_RETRY_ATTEMPTS,
                retry_delay=settings.SAGA_RETRY_DELAY,
                compensation_attempts=settings.SAGA_COMPENSATION_RETRY_ATTEMPTS,
                call_timeout=settings.SAGA_CALL_TIMEOUT,
                version=definition.version,
                notify=definition.notify,
            )
            self._plans[definition_id] = plan
        return plan


@dataclass
class Runtime:
    owner: str
    lease_seconds: float
    plans: PlanCache
    stopping: Callable[[], bool] = lambda: False
    # Told when a released saga becomes due again (idle threads wake for it).
    released: Callable[[datetime | None], None] = lambda due: None
    # Commits the transitions of this process's sagas together (store/writer.py); None:
    # each in its own transaction.
    writer: GroupWriter | None = None


def saga_run(claimed: Claimed, runtime: Runtime) -> str | None:
    """Advance the saga until it finishes or waits; LeaseLost ends it quietly.

    Returns the status it was handed back with (None when the lease was lost)."""
    lease, state = claimed.lease, claimed.state
    plan = runtime.plans.get(claimed.definition_id)
    if not state.steps:
        state.steps = steps_initial([{"name": s.name, "group": s.group} for s in plan.steps])
    if any(step.group for step in plan.steps):
        return _grouped_run(claimed, runtime, plan)
    before, closed = state.status, None
    interrupted = call_interrupted(state)
    if interrupted is not None:
        # A worker died mid-call: the outcome is unknown, so the call is sent again with
        # the same Idempotency-Key and attempt number (within SAGA_MAX_INTERRUPTIONS).
        name = plan.steps[interrupted.index].name
        mark = state.steps[interrupted.index].get("in_flight")
        opened = AttemptOpen.from_mark(interrupted, name, mark)
        state, result = interruption_settle(
            state,
            plan,
            interrupted,
            timezone.now(),
            _jitter(),
            settings.SAGA_MAX_INTERRUPTIONS,
        )
        # Its attempt row is written now, as `interrupted` (it was only in the saga row).
        closed = AttemptClose(interrupted, name, result, opened)
    # Every log line of this run (SAGA events, warnings) carries the saga's request id.
    token = set_request_id(lease.request_id)
    try:
        while True:
            # `state` stays the settled state: a cancel found by the fence is decided
            # from it again (decide may already have finished the saga as completed).
            decided, call = decide(state, plan, timezone.now())
            try:
                if call is None or runtime.stopping() or lease.lost:
                    _hand_back(lease, before, decided, closed, call, runtime, plan)
                    return decided.status
                state, request, opened = _call_open(
                    lease, before, decided, plan, call, closed, claimed, runtime
                )
            except ControlRequested as control:
                # A cancel, pause or callback arrived: nothing was written; decide again.
                _control_take(state, control)
                continue
            before = state.status
            result = request if isinstance(request, CallResult) else _send(request)
            state = call_settle(state, plan, call, result, timezone.now(), _jitter())
            closed = AttemptClose(call, opened.step, result, opened)
    except LeaseLost:
        logger.info("lease lost, leaving the saga to its new holder", extra=_ids(lease))
        return None
    finally:
        reset_request_id(token)


def _call_open(lease, before, state, plan, call, closed, claimed, runtime):
    """Record the call as in flight (and the previous one's attempt row) before it is made."""
    now = timezone.now()
    request = call_prepare(
        plan=plan,
        call=call,
        saga_id=str(lease.saga_id),
        saga_input=claimed.saga_input,
        steps=state.steps,
        request_id=lease.request_id,
        trace=lease.trace,
        allowed_hosts=settings.SAGA_ALLOWED_HOSTS,
        callback=CallbackConfig(settings.SAGA_PUBLIC_URL, settings.SECRET_KEY),
    )
    spec = call_spec(plan, call)
    sent = isinstance(request, ParticipantRequest)
    fingerprint = None
    if sent:
        fingerprint = request_fingerprint(
            request.method, request.url, request.headers, request.body
        )
    state = call_start(state, call, now, fingerprint)
    opened = AttemptOpen(
        call=call,
        step=plan.steps[call.index].name,
        run=state.steps[call.index].get("run", 1),
        method=spec["method"].upper(),
        url=request.url if sent else str(spec["url"]),
        started_at=now,
        **(_request_logged(request) if sent else {}),
    )
    transition_record(
        lease=lease,
        before=before,
        state=state,
        now=now,
        lease_seconds=runtime.lease_seconds,
        closed=closed,
        opened=opened,
        writer=runtime.writer,
        plan=plan,
    )
    return state, request, opened


def _request_logged(request: ParticipantRequest) -> dict:
    """What `/logs/` keeps of the request: redacted headers, the body cut (call_log.py)."""
    headers = logged_headers(request.headers, tuple(settings.SAGA_REDACT_HEADERS))
    body, truncated = logged_body(request.payload, request.body, settings.SAGA_LOG_BODY_BYTES)
    return {"request_headers": headers, "request_body": body, "request_truncated": truncated}


def _send(request: ParticipantRequest) -> CallResult:
    return participant_call(request, max_bytes=settings.SAGA_MAX_RESPONSE_BYTES)


def _hand_back(lease, before, state, closed, call, runtime, plan) -> None:
    """Persist the settled state and release the lease (finished, waiting, or stopping)."""
    now = timezone.now()
    if call is not None:
        state.next_attempt_at = now  # stopping: due at once for another worker
    transition_record(
        lease=lease,
        before=before,
        state=state,
        now=now,
        lease_seconds=runtime.lease_seconds,
        closed=closed,
        release=True,
        writer=runtime.writer,
        plan=plan,
    )
    runtime.released(state.next_attempt_at)


def _jitter() -> float:
    return random.random()  # noqa: S311  (spreads retries; not a secret)


def _ids(lease: Lease) -> dict:
    return {
        "saga_id": str(lease.saga_id),
        "definition": lease.definition,
        "request_id": lease.request_id,
    }


# Parallel groups (DESIGN §9.3) ---------------------------------------------------------

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _calls_pool() -> ThreadPoolExecutor:
    global _pool  # noqa: PLW0603  (one per process, made on first use: after any fork)
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(GROUP_CALL_THREADS, thread_name_prefix="saga-call")
        return _pool


def _grouped_run(claimed: Claimed, runtime: Runtime, plan: SagaPlan) -> str | None:
    """saga_run for a definition with groups: the same decisions, but several member
    calls may be in flight. Only this thread writes; pool threads only make HTTP calls.
    Each ended call is recorded by itself, or with the next opening."""
    lease = claimed.lease
    token = set_request_id(lease.request_id)
    flights: dict[Future, tuple[Call, AttemptOpen]] = {}
    try:
        state, before = _interruptions_record(claimed, runtime, plan)
        closed = None
        while True:
            decided, call = decide(state, plan, timezone.now())
            try:
                # Several calls in flight only for a group's members (an ordinary step's
                # call is the only one).
                startable = not flights or in_group(decided.steps, call.index) if call else False
                if startable and not runtime.stopping() and not lease.lost:
                    state, request, opened = _call_open(
                        lease, before, decided, plan, call, closed, claimed, runtime
                    )
                    closed, before = None, state.status
                    if isinstance(request, CallResult):  # never sent (template, URL)
                        state = call_settle(state, plan, call, request, timezone.now(), _jitter())
                        closed = AttemptClose(call, opened.step, request, opened)
                    else:
                        context = contextvars.copy_context()  # its log lines' request id
                        flights[_calls_pool().submit(context.run, _send, request)] = (
                            call,
                            opened,
                        )
                    continue
                if not flights:
                    _hand_back(lease, before, decided, closed, call, runtime, plan)
                    return decided.status
                if closed is not None or decided != state:
                    _record(lease, before, decided, closed, runtime, plan)
                    state, closed, before = decided, None, decided.status
            except ControlRequested as control:
                _control_take(state, control)
                continue
            ended = _first_ended(flights, decided)
            if ended is not None:
                call, opened = flights.pop(ended)
                state = call_settle(state, plan, call, ended.result(), timezone.now(), _jitter())
                closed = AttemptClose(call, opened.step, ended.result(), opened)
    except LeaseLost:
        logger.info("lease lost, leaving the saga to its new holder", extra=_ids(lease))
        return None
    finally:
        reset_request_id(token)


def _first_ended(flights: dict, decided: SagaState) -> Future | None:
    """One call that ended, waiting at most until a member is due again (None: none yet)."""
    timeout = GROUP_WAIT_SECONDS
    if decided.next_attempt_at is not None:
        due = (decided.next_attempt_at - timezone.now()).total_seconds()
        if due > 0:  # else stale: nothing is due (decide would have named its call)
            timeout = min(timeout, due)
    done, _ = wait(flights, timeout=timeout, return_when=FIRST_COMPLETED)
    return next(iter(done), None)


def _interruptions_record(claimed: Claimed, runtime: Runtime, plan: SagaPlan):
    """Each call a lost worker left in flight (every member's, in a group) is recorded as
    interrupted and will be sent again with its own key (or fails, past the budget)."""
    state, before = claimed.state, claimed.state.status
    for call in calls_interrupted(state):
        name = plan.steps[call.index].name
        opened = AttemptOpen.from_mark(call, name, state.steps[call.index].get("in_flight"))
        state, result = interruption_settle(
            state, plan, call, timezone.now(), _jitter(), settings.SAGA_MAX_INTERRUPTIONS
        )
        closed = AttemptClose(call, name, result, opened)
        _record(claimed.lease, before, state, closed, runtime, plan)
        before = state.status
    return state, before


def _record(lease, before, state, closed, runtime, plan) -> None:
    """Persist `state` (and the ended call's attempt row), the lease kept; a cancel, pause
    or callback found by the fence is taken into the state and the write made again
    (decide acts on it next)."""
    while True:
        try:
            transition_record(
                lease=lease,
                before=before,
                state=state,
                now=timezone.now(),
                lease_seconds=runtime.lease_seconds,
                closed=closed,
                writer=runtime.writer,
                plan=plan,
            )
            return
        except ControlRequested as control:
            _control_take(state, control)


def _control_take(state: SagaState, control: ControlRequested) -> None:
    state.cancel_requested = state.cancel_requested or control.cancel_requested
    state.pause_request = state.pause_request or control.pause_request
    if control.callback != state.callback_seen:
        state.callback_seen = control.callback
        state.callback = callback_parse(control.callback)
