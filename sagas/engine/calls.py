"""The HTTP request of a call, from its definition and the saga's data. Pure.

Headers on every call: Content-Type, an Idempotency-Key that is the same on every retry of
the call (`<saga id>:<step>:<action|compensation>`, plus `:<n>` from a step's n-th run on,
DESIGN §9.2), X-Saga-Id, X-Saga-Step, X-Request-ID,
and the saga's W3C trace: `traceparent` (a new parent id per call) and `tracestate` when
the saga has one. An asynchronous action's every call also carries X-Saga-Callback-Url and
X-Saga-Callback-Token (DESIGN §9.4, callbacks.py).
"""

import hashlib
import json
from dataclasses import dataclass

from sagas.engine.callbacks import callback_token, callback_url
from sagas.engine.headers import header_reserved_problem
from sagas.engine.hosts import url_problem
from sagas.engine.outcomes import CallResult, permanent_failure
from sagas.engine.participants import ParticipantRequest
from sagas.engine.plan import SagaPlan
from sagas.engine.templates import TemplateError, context_for, render, render_headers
from sagas.engine.trace_context import TraceContext, call_traceparent
from sagas.engine.transitions import Call, key_run
from sagas.models import Phase

OWN_HEADERS = (
    "content-type",
    "idempotency-key",
    "x-saga-id",
    "x-saga-step",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-saga-callback-url",
    "x-saga-callback-token",
)


@dataclass(frozen=True)
class CallbackConfig:
    """Where participants call back (SAGA_PUBLIC_URL) and the key tokens derive from."""

    public_url: str
    secret: str


def idempotency_key(saga_id: str, step: str, phase: str, run: int = 1) -> str:
    key = f"{saga_id}:{step}:{phase}"
    return key if run < 2 else f"{key}:{run}"


def request_fingerprint(method: str, url: str, headers: dict, body: bytes | None) -> str:
    """What makes two requests of a step the same request: method, URL, the definition's
    own headers and the body (not the per-call headers this module adds)."""
    own = sorted((k.lower(), v) for k, v in headers.items() if k.lower() not in OWN_HEADERS)
    parts = json.dumps([method, url, own], separators=(",", ":")).encode() + b"\n" + (body or b"")
    return hashlib.sha256(parts).hexdigest()[:32]


def call_spec(plan: SagaPlan, call: Call) -> dict:
    step = plan.steps[call.index]
    return step.action if call.phase == Phase.ACTION else step.compensation


def call_prepare(
    *,
    plan: SagaPlan,
    call: Call,
    saga_id: str,
    saga_input: dict,
    steps: list[dict],
    request_id: str,
    trace: TraceContext,
    allowed_hosts: list[str],
    callback: CallbackConfig | None = None,
) -> ParticipantRequest | CallResult:
    """The request to send, or the permanent failure that stops it from being sent."""
    spec = call_spec(plan, call)
    name = plan.steps[call.index].name
    # A compensation may refer to a response its (uncertain) step never returned: null.
    lenient = call.phase == Phase.COMPENSATION
    context = context_for(saga_id, plan.definition, saga_input, steps)
    try:
        url = render(spec["url"], context, lenient_steps=lenient, url=True)
        headers = render_headers(spec.get("headers") or {}, context, lenient_steps=lenient)
        body = render(spec.get("body"), context, lenient_steps=lenient)
    except TemplateError as exc:
        return permanent_failure(str(exc))
    problem = url_problem(url, allowed_hosts) if isinstance(url, str) else "is not a string"
    if problem:
        return permanent_failure(f"URL {problem}")
    # Registration refuses reserved names; a version stored before that rule loses them
    # here (a framing header sent as given could smuggle a request on a shared connection).
    headers = {
        k: v
        for k, v in headers.items()
        if k.lower() not in OWN_HEADERS and header_reserved_problem(k) is None
    }
    method = spec["method"].upper()
    payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
    fingerprint = request_fingerprint(method, url, headers, payload)
    run = key_run(steps[call.index], fingerprint)
    headers.update(
        {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key(saga_id, name, call.phase, run),
            "X-Saga-Id": saga_id,
            "X-Saga-Step": name,
            "X-Request-ID": request_id,
            "traceparent": call_traceparent(trace),
        }
    )
    if trace.state:
        headers["tracestate"] = trace.state
    if call.phase == Phase.ACTION and plan.steps[call.index].async_timeout and callback:
        # The token follows the key: a request re-sent with an earlier run's key (a plain
        # resume of an uncertain step) carries that run's token, so a participant that
        # deduplicates by key may call back with the token it already has.
        headers["X-Saga-Callback-Url"] = callback_url(callback.public_url, saga_id, name)
        headers["X-Saga-Callback-Token"] = callback_token(callback.secret, saga_id, name, run)
    return ParticipantRequest(
        method=method,
        url=url,
        headers=headers,
        body=payload,
        timeout=float(spec.get("timeout_seconds") or plan.call_timeout),
        payload=body,
    )
