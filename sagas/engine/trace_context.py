"""W3C Trace Context (https://www.w3.org/TR/trace-context/) for a saga. Pure.

A `POST /api/sagas/` may carry `traceparent` and `tracestate`; the saga keeps them and
every participant call sends a `traceparent` with the saga's trace id, its flags, and a
new parent id (the call is a new span), plus the `tracestate` as received. Without a valid
`traceparent` the saga starts a trace of its own (and any `tracestate` is dropped, as the
spec requires).
"""

import re
import secrets
from dataclasses import dataclass

# Version 00 only, lower-case hex, nothing after the flags: a header this service cannot
# read exactly is treated as absent (the spec's "restart the trace").
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
ZERO_TRACE_ID = "0" * 32
ZERO_PARENT_ID = "0" * 16
# The flags of a trace this service starts: sampled, so participants that sample by their
# parent's decision record their part of the saga.
OWN_FLAGS = "01"
# tracestate: at most 32 members `key=value`; keys are simple (`vendor`) or multi-tenant
# (`tenant@vendor`); values are printable ASCII without `,` and `=`, not ending in a space.
TRACESTATE_KEY = re.compile(
    r"^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$"
)
TRACESTATE_VALUE = re.compile(
    r"^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$"
)
MAX_TRACESTATE_MEMBERS = 32
# The spec asks every vendor to pass on at least 512 characters; a longer one is dropped
# whole rather than cut (cutting must follow rules on which members to drop first).
MAX_TRACESTATE_LENGTH = 512


@dataclass(frozen=True)
class TraceContext:
    """The trace a saga belongs to: what every call's `traceparent` is built from."""

    trace_id: str
    parent_id: str  # the span that started the saga (the client's, or the start's own)
    flags: str
    state: str = ""  # `tracestate`, normalized; "" when none

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"


def traceparent_parse(value: str | None) -> TraceContext | None:
    """The context of a `traceparent` header value, or None when it is not a valid
    version-00 one (trace id or parent id all zeros included)."""
    match = TRACEPARENT.match((value or "").strip(" \t"))
    if match is None:
        return None
    trace_id, parent_id, flags = match.groups()
    if trace_id == ZERO_TRACE_ID or parent_id == ZERO_PARENT_ID:
        return None
    return TraceContext(trace_id=trace_id, parent_id=parent_id, flags=flags)


def tracestate_parse(value: str | None) -> str:
    """A `tracestate` header value with its empty members and spaces removed, or "" when
    absent or invalid (a bad member, a repeated key, too many members, too long)."""
    members = [m.strip(" \t") for m in (value or "").split(",")]
    members = [m for m in members if m]
    if len(members) > MAX_TRACESTATE_MEMBERS:
        return ""
    keys = set()
    for member in members:
        key, equals, member_value = member.partition("=")
        valid = equals and TRACESTATE_KEY.match(key) and TRACESTATE_VALUE.match(member_value)
        if not valid or key in keys:
            return ""
        keys.add(key)
    joined = ",".join(members)
    return joined if len(joined) <= MAX_TRACESTATE_LENGTH else ""


def trace_new() -> TraceContext:
    """A new trace, for a saga started without a valid `traceparent`."""
    return TraceContext(trace_id=_random_hex(16), parent_id=_random_hex(8), flags=OWN_FLAGS)


def trace_incoming(traceparent: str | None, tracestate: str | None) -> TraceContext:
    """The saga's trace from a start request's headers: theirs when valid, else new."""
    parent = traceparent_parse(traceparent)
    if parent is None:
        return trace_new()
    return TraceContext(
        trace_id=parent.trace_id,
        parent_id=parent.parent_id,
        flags=parent.flags,
        state=tracestate_parse(tracestate),
    )


def trace_stored(traceparent: str, tracestate: str, saga_id_hex: str) -> TraceContext:
    """The trace of a saga row. Sagas started before the trace was kept have none: their
    own id (32 hex digits, never all zeros) is their trace id, the same on every call."""
    parent = traceparent_parse(traceparent)
    if parent is None:
        return TraceContext(trace_id=saga_id_hex, parent_id=_random_hex(8), flags=OWN_FLAGS)
    return TraceContext(parent.trace_id, parent.parent_id, parent.flags, tracestate)


def call_traceparent(trace: TraceContext) -> str:
    """The `traceparent` of one participant call: the saga's trace, a new parent id."""
    return f"00-{trace.trace_id}-{_random_hex(8)}-{trace.flags}"


def _random_hex(size: int) -> str:
    # All zeros is invalid; at 1 in 2**64 or less it still costs only a compare.
    while (value := secrets.token_hex(size)) == "0" * (2 * size):
        pass
    return value
