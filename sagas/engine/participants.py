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

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError, ReadTimeoutError

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


def session() -> requests.Session:
    """One Session per thread: keep-alive connections to participants are reused."""
    current = getattr(_local, "session", None)
    if current is None:
        current = requests.Session()
        # No proxy/netrc lookups per call (they cost CPU and are not part of the contract).
        current.trust_env = False
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=16, max_retries=0)
        current.mount("http://", adapter)
        current.mount("https://", adapter)
        _local.session = current
    return current


def participant_call(request: ParticipantRequest, *, max_bytes: int) -> CallResult:
    """Make one call (no redirects, bounded time, body read up to `max_bytes`) and classify it."""
    started = time.monotonic()
    try:
        status_code, body, headers = _exchange(request, max_bytes=max_bytes, started=started)
    except _TimedOut:
        return _failed("timeout", f"timed out after {request.timeout:g} s", started)
    except (requests.ConnectionError, ProtocolError, OSError) as exc:
        return _failed("connection", f"connection failed: {_short(exc)}", started)
    except requests.RequestException as exc:
        return _failed("connection", f"request failed: {_short(exc)}", started)
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


class _TimedOut(Exception):
    pass


def _exchange(request: ParticipantRequest, *, max_bytes: int, started: float):
    try:
        response = session().request(
            request.method,
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=(request.timeout, request.timeout),
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout:
        raise _TimedOut
    try:
        raw = _read_capped(response, max_bytes=max_bytes, deadline=started + request.timeout)
        return response.status_code, parse_body(raw), response.headers
    finally:
        response.close()


def _read_capped(response: requests.Response, *, max_bytes: int, deadline: float) -> bytes:
    """The body up to `max_bytes` (the rest is dropped with the connection)."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                return b"".join(chunks)[:max_bytes]
            if time.monotonic() > deadline:
                raise _TimedOut
    except (requests.Timeout, ReadTimeoutError, requests.exceptions.ConnectionError) as exc:
        if "timed out" in str(exc).lower() or isinstance(exc, requests.Timeout | ReadTimeoutError):
            raise _TimedOut
        raise
    return b"".join(chunks)


def _failed(failure: str, message: str, started: float) -> CallResult:
    outcome, uncertain = classify(None, failure)
    duration_ms = (time.monotonic() - started) * 1000
    return CallResult(outcome, None, None, message, None, uncertain, duration_ms)


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:ERROR_TEXT_CHARS]
