"""The engine's write path: every transition is one short transaction, fenced.

    fenced UPDATE of the saga row  (WHERE id = … AND lease_token = …, row count checked)
    + the attempt row of the call that ended, written once with its outcome
    + the history rows of the change (history.py)
    + the webhook events they cause (outbox.py), when the definition has `notify`
    then, after the commit, the events (events.py).

A call about to be sent is recorded in the saga row itself: its step's `in_flight` mark
(method, url, attempt, started_at), part of the same fenced UPDATE, so "recorded before
the call" costs no attempt row; the row is written when the call ends (or, after a crash,
as `interrupted` at recovery). On PostgreSQL the pieces are one data-modifying statement
(a CTE is atomic on its own: no BEGIN/COMMIT round trips); on SQLite the same pieces run
as the statements of one short transaction. Zero rows means another worker took the lease
over: LeaseLost, and the caller stops quietly without having recorded anything. Lease
renewal and release are fenced the same way.
"""

# ruff: noqa: S608

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction

from sagas.engine.call_log import logged_body
from sagas.engine.plan import SagaPlan
from sagas.engine.store import dialect
from sagas.engine.store.events import event_emit, transition_events
from sagas.engine.store.history import history_insert, history_params, history_sql
from sagas.engine.store.outbox import WRITTEN, outbox_insert, outbox_params, outbox_rows, outbox_sql
from sagas.engine.store.records import (
    AttemptClose,
    AttemptOpen,
    ControlRequested,
    Lease,
    LeaseLost,
)
from sagas.engine.store.writer import GroupWriter
from sagas.engine.transitions import SagaState
from sagas.engine.webhooks import SagaFacts
from sagas.models import SagaAttempt, SagaInstance

SAGA = SagaInstance._meta.db_table
ATTEMPT = SagaAttempt._meta.db_table
ATTEMPT_COLUMNS = (
    "step",
    "step_index",
    "phase",
    "attempt",
    "run",
    "method",
    "url",
    "started_at",
    "status_code",
    "outcome",
    "error",
    "duration_ms",
    "request_headers",
    "request_body",
    "response_body",
    "truncated",
)
ATTEMPT_TYPES = {"step_index": "integer", "attempt": "integer", "run": "integer"}
ATTEMPT_TYPES |= {"started_at": "timestamptz"}
ATTEMPT_TYPES |= {"status_code": "integer", "duration_ms": "float8", "truncated": "boolean"}
ATTEMPT_TYPES |= dict.fromkeys(("request_headers", "request_body", "response_body"), "jsonb")


def transition_record(
    *,
    lease: Lease,
    before: str,
    state: SagaState,
    now: datetime,
    lease_seconds: float,
    closed: AttemptClose | None = None,
    opened: AttemptOpen | None = None,
    release: bool = False,
    writer: GroupWriter | None = None,
    plan: SagaPlan | None = None,
) -> None:
    """Persist `state` (with `opened` as its step's in-flight mark, and the attempt row
    of `closed`) if we still hold the lease; else LeaseLost.

    Held, the saga's `next_attempt_at` is left as it was claimed (the due check reads the
    lease expiry; an unchanged indexed column lets PostgreSQL update in place). Released,
    it is the state's own (a retry time, or None when finished).
    `now` is the worker's clock: the row's `updated_at`, and the lease times on SQLite.
    With a `writer`, the write is committed with other sagas' (writer.py).
    The `plan`'s notify config turns the history events into outbox rows (webhooks).
    """
    # The worker re-reads cancel_requested and pause_request at each transition at no
    # cost: until it knows of one, the fence also requires it unset — the final write
    # included, so that a saga never ends `completed` (or `compensated`) after a cancel was
    # accepted (§9.1) — and a miss tells which condition failed.
    watch = Watch(
        cancel=not state.cancel_requested,
        pause=state.pause_request is None,
        callback=state.callback_seen,
    )
    if opened is not None:
        state.steps[opened.call.index]["in_flight"] = opened.mark()
    params = _state_params(lease, state, now, release)
    if watch.callback is not None:
        # Applied or dropped (decide cleared it): the column is emptied; else kept.
        params["callback_seen"] = watch.callback
        params["callback"] = None if state.callback is None else watch.callback
    params |= dialect.clock_params(now, lease_seconds=None if release else lease_seconds)
    attempt = None
    if closed is not None:
        params |= _close_params(closed)
        attempt = "insert" if closed.opened is not None else "complete"
    events = list(state.events)
    if events:
        params |= history_params(events)
    webhooks = _webhook_rows(lease, state, plan)
    if webhooks:
        params |= outbox_params(webhooks)

    def write() -> int:
        return _write(params, watch, release, attempt, lease.saga_id, events, webhooks, now)

    written = write() if writer is None else writer.write(write)
    if written != 1:
        _raise_missed(lease, watch)
    state.events.clear()
    if state.callback is None:
        state.callback_seen = None
    if webhooks:
        WRITTEN.set()
    for event in transition_events(lease, before, state, closed, events):
        event_emit(event)


@dataclass(frozen=True)
class Watch:
    """Which operator requests the fence checks are still unset, and the callback column
    as the worker last read it (the fence checks it is unchanged: callbacks.py)."""

    cancel: bool
    pause: bool
    callback: str | None = None


def _webhook_rows(lease: Lease, state: SagaState, plan: SagaPlan | None) -> list[dict]:
    if plan is None or plan.notify is None or not state.events:
        return []
    saga = SagaFacts(
        saga_id=str(lease.saga_id),
        definition=lease.definition,
        definition_version=plan.version,
        status=str(state.status),
        error=state.error,
    )
    return outbox_rows(state.events, saga, plan.notify)


def _write(params, watch, release, attempt, saga_id, events, webhooks, now) -> int:
    """`attempt`: None, "insert" (the ended call's row) or "complete" (a row an earlier
    version inserted in flight)."""
    if dialect.is_postgresql():
        parts = [f"saga AS ({_saga_update(watch, release)})"]
        if attempt == "insert":
            parts.append(f"closed AS ({_attempt_insert('id', 'FROM saga')})")
        elif attempt == "complete":
            parts.append(f"closed AS ({_attempt_complete('(SELECT id FROM saga)')})")
        if events:
            parts.append(f"history AS ({history_sql('saga.id', 'FROM saga')})")
        if webhooks:
            parts.append(f"webhooks AS ({outbox_sql('saga.id', 'FROM saga')})")
        sql = "WITH " + ", ".join(parts) + " SELECT count(*) FROM saga"
        return dialect.execute(sql, params)[0][0]
    with transaction.atomic():
        if not dialect.execute(_saga_update(watch, release), params):
            return 0
        if attempt == "insert":
            dialect.execute(_attempt_insert("%(id)s", ""), params)
        elif attempt == "complete":
            dialect.execute(_attempt_complete("(%(id)s)"), params)
        history_insert(saga_id, events)
        outbox_insert(saga_id, webhooks, now)
    return 1


def _saga_update(watch: Watch, release: bool) -> str:
    expiry = dialect.later_sql("lease_seconds")
    guard = " AND cancel_requested = false" if watch.cancel else ""
    guard += " AND pause_request IS NULL" if watch.pause else ""
    seen = watch.callback is not None
    guard += " AND callback = %(callback_seen)s" if seen else " AND callback IS NULL"
    # Released, the state's own due time; held, unchanged (see transition_record).
    due = f", next_attempt_at = {dialect.cast('next_attempt_at', 'timestamptz')}"
    return (
        f"UPDATE {SAGA} SET status = %(status)s, phase = %(phase)s,"
        f" current_step = %(current_step)s, steps = {dialect.cast('steps', 'jsonb')},"
        f" error = {dialect.cast('error', 'jsonb')}, cause = {dialect.cast('cause', 'jsonb')},"
        " started_at = %(started_at)s, finished_at = %(finished_at)s,"
        " updated_at = %(updated_at)s, paused_at = %(paused_at)s,"
        " rewind_step = %(rewind_step)s,"
        f"{' callback = %(callback)s,' if seen else ''}"
        " lease_token = %(lease_token)s, lease_owner = %(lease_owner)s,"
        # Held (lease_seconds set), the expiry; released (NULL), none.
        f" lease_expires_at = {expiry}{due if release else ''}"
        f" WHERE id = %(id)s AND lease_token = %(token)s{guard} RETURNING id"
    )


def _attempt_complete(saga_ids: str) -> str:
    return (
        f"UPDATE {ATTEMPT} SET status_code = %(c_status_code)s, outcome = %(c_outcome)s,"
        " error = %(c_error)s, duration_ms = %(c_duration_ms)s"
        f" WHERE saga_id IN {saga_ids} AND step_index = %(c_step_index)s"
        " AND phase = %(c_phase)s AND attempt = %(c_attempt)s AND outcome IS NULL"
    )


def _attempt_insert(saga_id: str, source: str) -> str:
    values = ", ".join(
        dialect.cast(f"c_{column}", ATTEMPT_TYPES[column])
        if column in ATTEMPT_TYPES
        else f"%(c_{column})s"
        for column in ATTEMPT_COLUMNS
    )
    return (
        f"INSERT INTO {ATTEMPT} (saga_id, {', '.join(ATTEMPT_COLUMNS)})"
        f" SELECT {saga_id}, {values} {source}"
    )


def _raise_missed(lease: Lease, watch: Watch):
    fenced = SagaInstance.objects.filter(id=lease.saga_id, lease_token=lease.token)
    found = fenced.values_list("cancel_requested", "pause_request", "callback").first()
    if found is None:
        raise LeaseLost(str(lease.saga_id))
    cancel_requested, pause_request, callback = found
    raise ControlRequested(
        str(lease.saga_id),
        cancel_requested=cancel_requested,
        pause_request=pause_request,
        callback=callback,
    )


def _state_params(lease: Lease, state: SagaState, now: datetime, release: bool) -> dict:
    values = {
        "status": state.status,
        "phase": state.phase,
        "current_step": state.current_step,
        "steps": state.steps,
        "error": state.error,
        "cause": state.cause,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "updated_at": now,
        "lease_token": None if release else lease.token,
        "lease_owner": "" if release else lease.owner,
        "next_attempt_at": state.next_attempt_at,
        "paused_at": state.paused_at,
        "rewind_step": state.rewind_step,
    }
    params = {column: dialect.adapt(SagaInstance, column, values[column]) for column in values}
    params["id"] = dialect.adapt(SagaInstance, "id", lease.saga_id)
    params["token"] = dialect.adapt(SagaInstance, "lease_token", lease.token)
    return params


def _close_params(closed: AttemptClose) -> dict:
    result, opened = closed.result, closed.opened
    limit = settings.SAGA_LOG_BODY_BYTES
    response_body, response_cut = logged_body(result.response, result.raw, limit)
    values = {
        "step": closed.step,
        "step_index": closed.call.index,
        "phase": str(closed.call.phase),
        "attempt": closed.call.attempt,
        "run": opened.run if opened else 1,
        "method": opened.method if opened else "",
        "url": opened.url if opened else "",
        "started_at": opened.started_at if opened else None,
        "status_code": result.status_code,
        "outcome": str(result.outcome),
        "error": result.error,
        "duration_ms": round(result.duration_ms, 3),
        "request_headers": opened.request_headers if opened else None,
        "request_body": opened.request_body if opened else None,
        "response_body": response_body,
        "truncated": response_cut or bool(opened and opened.request_truncated),
    }
    return {f"c_{key}": dialect.adapt(SagaAttempt, key, value) for key, value in values.items()}


def lease_renew(*, lease: Lease, now: datetime, lease_seconds: float) -> bool:
    """Push the lease expiry out while a call is in flight; False if it was lost.

    `now` is the worker's clock, used on SQLite only."""
    expiry = dialect.later_sql("lease_seconds")
    sql = (
        f"UPDATE {SAGA} SET lease_expires_at = {expiry}"
        " WHERE id = %(id)s AND lease_token = %(token)s RETURNING id"
    )
    params = _fence_params(lease) | dialect.clock_params(now, lease_seconds=lease_seconds)
    return len(dialect.execute(sql, params)) == 1


def lease_release(*, lease: Lease, now: datetime, delay_seconds: float) -> bool:
    """Give the saga back unchanged, due again in `delay_seconds` (shutdown, lock conflict,
    error); `now` as for lease_renew."""
    sql = (
        f"UPDATE {SAGA} SET lease_token = NULL, lease_owner = '', lease_expires_at = NULL,"
        f" next_attempt_at = {dialect.later_sql('delay_seconds')}"
        " WHERE id = %(id)s AND lease_token = %(token)s RETURNING id"
    )
    params = _fence_params(lease) | dialect.clock_params(now, delay_seconds=delay_seconds)
    return len(dialect.execute(sql, params)) == 1


def _fence_params(lease: Lease) -> dict:
    return {
        "id": dialect.adapt(SagaInstance, "id", lease.saga_id),
        "token": dialect.adapt(SagaInstance, "lease_token", lease.token),
    }
