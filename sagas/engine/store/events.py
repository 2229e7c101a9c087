"""After a transition committed: one `SAGA …` JSON log line per event, then the listeners
(the hook for metrics)."""

import logging
from collections.abc import Callable

from sagas.engine.store.records import AttemptClose, Lease
from sagas.engine.transitions import SagaState
from sagas.models import TERMINAL_STATUSES, SagaStatus

logger = logging.getLogger("sagas.engine")

# Called with each event dict after its transition committed (e.g. Prometheus counters).
# A listener must be fast and must not raise.
EVENT_LISTENERS: list[Callable[[dict], None]] = []


# History events of an asynchronous step (DESIGN §9.4) that also make a `SAGA` line:
# waiting for the callback, the callback applied, or no callback in time.
ASYNC_LINES = {"step_waiting": "waiting", "callback": "callback_applied", "timeout": "timeout"}


def transition_events(
    lease: Lease,
    before: str,
    state: SagaState,
    closed: AttemptClose | None,
    history: list[dict] = (),
):
    base = {
        "saga_id": str(lease.saga_id),
        "definition": lease.definition,
        "request_id": lease.request_id,
        "trace_id": lease.trace.trace_id,
    }
    if closed is not None:
        result = closed.result
        yield base | {
            "event": "call",
            "step": closed.step,
            "phase": str(closed.call.phase),
            "attempt": closed.call.attempt,
            "outcome": str(result.outcome),
            "status_code": result.status_code,
            "duration_ms": round(result.duration_ms, 3),
            "error": result.error,
        }
    yield from _async_events(base, history)
    if state.status == before:
        return
    event = {
        "event": str(state.status),
        "status": str(state.status),
        "step": None,
        "phase": str(state.phase),
        "attempt": None,
        "outcome": str(state.status),
        "duration_ms": None,
        "error": (state.error or {}).get("code"),
    }
    if state.status in TERMINAL_STATUSES and state.finished_at is not None:
        took = state.finished_at - lease.created_at
        event["duration_ms"] = round(took.total_seconds() * 1000, 3)
        event["event"] = "finished"
    elif state.status == SagaStatus.RUNNING:
        event["event"] = "started"
    yield base | event


def _async_events(base: dict, history: list[dict]):
    for entry in history:
        details = entry.get("details") or {}
        kind = "step_waiting" if entry["event"] == "step_waiting" else details.get("via")
        if kind not in ASYNC_LINES:
            continue
        outcome = "waiting" if kind == "step_waiting" else entry["event"].removeprefix("step_")
        yield base | {
            "event": ASYNC_LINES[kind],
            "step": entry["step"],
            "phase": details.get("phase", "action"),
            "attempt": details.get("attempt"),
            "outcome": outcome,
            "duration_ms": None,
            "error": details.get("error"),
            "until": details.get("until"),
        }


def event_emit(event: dict, line: str | None = None) -> None:
    """One `SAGA …` log line (`line`, or the event's usual words), then the listeners."""
    parts = [event["event"], event["definition"], event["saga_id"]]
    if event.get("step"):
        parts += [event["step"], event["phase"], f"#{event['attempt']}"]
    parts.append(str(event["outcome"]))
    if event.get("duration_ms") is not None:
        parts.append(f"{event['duration_ms']:.1f}ms")
    logger.info("SAGA " + (line or " ".join(parts)), extra=event)
    for listener in EVENT_LISTENERS:
        try:
            listener(event)
        except Exception:
            logger.exception("saga event listener failed")
