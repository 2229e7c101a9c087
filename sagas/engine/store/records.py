"""What the store hands out and takes in: a lease, a claimed saga, the calls."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from sagas.engine.outcomes import CallResult
from sagas.engine.trace_context import TraceContext, trace_new
from sagas.engine.transitions import Call, SagaState


class LeaseLost(Exception):
    """The saga's lease token changed: another worker owns it now."""


class ControlRequested(Exception):
    """A cancel, a pause or a callback arrived since the claim: nothing was written;
    decide again with it (`callback`: the column's text)."""

    def __init__(
        self,
        saga_id: str,
        *,
        cancel_requested: bool,
        pause_request: dict | None,
        callback: str | None = None,
    ):
        super().__init__(saga_id)
        self.cancel_requested = cancel_requested
        self.pause_request = pause_request
        self.callback = callback


@dataclass
class Lease:
    saga_id: uuid.UUID
    token: uuid.UUID
    owner: str
    definition: str
    created_at: datetime
    lost: bool = False  # set by the lease keeper when a renewal found another token
    # The X-Request-ID of the saga's start: on every call and every SAGA log line.
    request_id: str = ""
    # The saga's W3C trace: every call's `traceparent`, and `trace_id` on SAGA log lines.
    trace: TraceContext = field(default_factory=trace_new)


@dataclass
class Claimed:
    lease: Lease
    state: SagaState
    saga_input: dict
    definition_id: int


@dataclass(frozen=True)
class AttemptOpen:
    """A call about to be sent: kept in its step's state (`in_flight`) until it ends."""

    call: Call
    step: str
    method: str
    url: str
    started_at: datetime
    run: int = 1
    # What `/logs/` keeps of the request (call_log.py): None when it was never sent.
    request_headers: dict | None = None
    request_body: Any = None
    request_truncated: bool = False

    def mark(self) -> dict:
        """The step's `in_flight` mark: what the attempt row needs once the call ends."""
        return {
            "phase": str(self.call.phase),
            "method": self.method,
            "url": self.url,
            "attempt": self.call.attempt,
            "run": self.run,
            "started_at": self.started_at.isoformat(),
            "request_headers": self.request_headers,
            "request_body": self.request_body,
            "request_truncated": self.request_truncated,
        }

    @classmethod
    def from_mark(cls, call: Call, step: str, mark) -> "AttemptOpen | None":
        """The call a step's `in_flight` mark records; None for a bare `True` (an earlier
        version inserted the attempt row in flight instead)."""
        if not isinstance(mark, dict):
            return None
        started_at = parse_datetime(mark["started_at"])
        return cls(
            call,
            step,
            mark["method"],
            mark["url"],
            started_at,
            mark.get("run", 1),
            # A mark from before §9.6 has no request.
            mark.get("request_headers"),
            mark.get("request_body"),
            mark.get("request_truncated", False),
        )


@dataclass(frozen=True)
class AttemptClose:
    """A call that ended: its attempt row is written once, with the outcome."""

    call: Call
    step: str
    result: CallResult
    # Its in-flight record; None when the row was inserted in flight (earlier version):
    # that row is then completed instead.
    opened: AttemptOpen | None = None
