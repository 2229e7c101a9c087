"""The one HTTP client for participant calls, and the one place outcomes are classified.

2xx → succeeded. 408, 425, 429, 5xx, timeouts and connection errors → retryable.
Any other status (other 4xx, and 3xx: redirects are not followed) → permanent.
A timeout, a connection error or a 5xx is also *uncertain*: the call may have taken
effect, so a step whose retries run out that way is compensated.
"""

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3

from sagas.engine.retry import parse_retry_after
from sagas.models import Outcome

RETRYABLE_STATUSES = frozenset({408, 425, 429})
ERROR_TEXT_CHARS = 300
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class ParticipantRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout: float


@dataclass(frozen=True)
class CallResult:
    outcome: str
    status_code: int | None = None
    response: Any = None
    error: str | None = None
    retry_after: float | None = None
    uncertain: bool = False
    duration_ms: float = 0.0


def classify(status_code: int | None, failure: str | None = None) -> tuple[str, bool]:
    """(outcome, uncertain) of a call that got `status_code`, or failed with `failure`
    ("timeout" or "connection") before a status arrived."""
    if failure is not None:
        return Outcome.RETRYABLE_ERROR, True
    if 200 <= status_code < 300:
        return Outcome.SUCCEEDED, False
    if status_code >= 500:
        return Outcome.RETRYABLE_ERROR, True
    if status_code in RETRYABLE_STATUSES:
        return Outcome.RETRYABLE_ERROR, False
    return Outcome.PERMANENT_ERROR, False


def permanent_failure(message: str) -> CallResult:
    """A call that could not be made at all (unresolved template, forbidden URL)."""
    return CallResult(outcome=Outcome.PERMANENT_ERROR, error=message)


def parse_body(raw: bytes) -> Any:
    """JSON when it parses, text otherwise, None when empty."""
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def error_text(body: Any) -> str:
    """The participant's own error message when its JSON has one, else the start of the body."""
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "reason"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or value.get("detail")
            if isinstance(value, str) and value.strip():
                return value.strip()[:ERROR_TEXT_CHARS]
    if body is None:
        return ""
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    return text.strip()[:ERROR_TEXT_CHARS]


def status_error(status_code: int, body: Any, location: str | None) -> str:
    if 300 <= status_code < 400:
        return f"HTTP {status_code}: redirect to {location or '(no Location)'} not followed"
    text = error_text(body)
    return f"HTTP {status_code}: {text}" if text else f"HTTP {status_code}"


_local = threading.local()


def http_pool() -> urllib3.PoolManager:
    """One connection pool per thread: keep-alive connections to participants are reused.

    urllib3 directly (what requests is built on): a third of requests' CPU per call, and
    no proxy or netrc lookups, which are not part of the contract.
    """
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = urllib3.PoolManager(num_pools=32, maxsize=4, retries=False)
    return pool


def participant_call(request: ParticipantRequest, *, max_bytes: int) -> CallResult:
    """Make one call (no redirects, bounded time, body read up to `max_bytes`) and classify it."""
    started = time.monotonic()
    try:
        status_code, body, headers = _exchange(request, max_bytes=max_bytes, started=started)
    except urllib3.exceptions.NewConnectionError as exc:  # (a ConnectTimeoutError subclass)
        return _failed("connection", f"connection failed: {_short(exc)}", started)
    except (urllib3.exceptions.TimeoutError, TimeoutError):
        return _failed("timeout", f"timed out after {request.timeout:g} s", started)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return _failed("connection", f"connection failed: {_short(exc)}", started)
    outcome, uncertain = classify(status_code)
    duration_ms = (time.monotonic() - started) * 1000
    if outcome == Outcome.SUCCEEDED:
        return CallResult(outcome, status_code, body, None, None, False, duration_ms)
    return CallResult(
        outcome,
        status_code,
        body,
        status_error(status_code, body, headers.get("Location")),
        parse_retry_after(headers.get("Retry-After"), datetime.now(UTC)),
        uncertain,
        duration_ms,
    )


def _exchange(request: ParticipantRequest, *, max_bytes: int, started: float):
    response = http_pool().request(
        request.method,
        request.url,
        body=request.body,
        headers=request.headers,
        timeout=urllib3.Timeout(connect=request.timeout, read=request.timeout),
        redirect=False,
        retries=False,
        preload_content=False,
    )
    try:
        raw = _read_capped(response, max_bytes=max_bytes, deadline=started + request.timeout)
        return response.status, parse_body(raw), response.headers
    finally:
        response.release_conn()


def _read_capped(response: urllib3.BaseHTTPResponse, *, max_bytes: int, deadline: float) -> bytes:
    """The body up to `max_bytes`; a longer one is cut and its connection dropped."""
    chunks, size = [], 0
    for chunk in response.stream(CHUNK_BYTES):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            response.close()
            return b"".join(chunks)[:max_bytes]
        if time.monotonic() > deadline:
            response.close()
            raise TimeoutError
    return b"".join(chunks)


def _failed(failure: str, message: str, started: float) -> CallResult:
    outcome, uncertain = classify(None, failure)
    duration_ms = (time.monotonic() - started) * 1000
    return CallResult(outcome, None, None, message, None, uncertain, duration_ms)


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:ERROR_TEXT_CHARS]
