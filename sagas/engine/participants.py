"""The one HTTP client for participant calls, and the one place outcomes are classified.

2xx → succeeded. 408, 425, 429, 5xx, timeouts and connection errors → retryable.
Any other status (other 4xx, and 3xx: redirects are not followed) → permanent.
A timeout, a connection error or a 5xx is also *uncertain*: the call may have taken
effect, so a step whose retries run out that way is compensated.
"""

import http.client
import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sagas.engine.retry import parse_retry_after
from sagas.models import Outcome

RETRYABLE_STATUSES = frozenset({408, 425, 429})
ERROR_TEXT_CHARS = 300


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


def _connection(scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
    """The calling thread's keep-alive connection to one participant origin.

    The standard library's client: one send and one receive per call (a third of the CPU
    of urllib3, a fifth of requests'), no proxy or netrc lookups, no redirects.
    """
    connections = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = {}
    key = (scheme, host, port)
    conn = connections.get(key)
    if conn is not None and conn.sock is not None and _dropped(conn.sock):
        conn.close()  # the participant closed the idle keep-alive connection
    if conn is None:
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, context=_tls_context())
        else:
            conn = http.client.HTTPConnection(host, port)
        connections[key] = conn
    return conn


def _dropped(sock: socket.socket) -> bool:
    """An idle connection that is readable has been closed by its peer."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _tls_context() -> ssl.SSLContext:
    context = getattr(_local, "tls", None)
    if context is None:
        context = _local.tls = ssl.create_default_context()
    return context


def participant_call(request: ParticipantRequest, *, max_bytes: int) -> CallResult:
    """Make one call (no redirects, bounded time, body read up to `max_bytes`) and classify it."""
    started = time.monotonic()
    url = urlsplit(request.url)
    conn = _connection(url.scheme, url.hostname, url.port)
    try:
        status_code, body, headers = _exchange(conn, url, request, max_bytes, started)
    except TimeoutError:
        conn.close()
        return _failed("timeout", f"timed out after {request.timeout:g} s", started)
    except (http.client.InvalidURL, ValueError) as exc:
        conn.close()  # refused before sending (bad characters in the URL or a header)
        return permanent_failure(f"invalid request: {_short(exc)}")
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
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


def _exchange(conn, url, request: ParticipantRequest, max_bytes: int, started: float):
    conn.timeout = request.timeout  # connect, and each send/receive
    if conn.sock is not None:
        conn.sock.settimeout(request.timeout)
    target = url.path or "/"
    if url.query:
        target = f"{target}?{url.query}"
    # Header values from templates may be non-ASCII: sent as UTF-8 bytes.
    headers = {k: v if v.isascii() else v.encode() for k, v in request.headers.items()}
    conn.request(request.method, target, body=request.body, headers=headers)
    response = conn.getresponse()
    raw = response.read(max_bytes + 1)
    if len(raw) > max_bytes or response.will_close:
        conn.close()  # the rest of a too-long body is dropped with the connection
    if time.monotonic() - started > request.timeout:
        raise TimeoutError
    return response.status, parse_body(raw[:max_bytes]), response.headers


def _failed(failure: str, message: str, started: float) -> CallResult:
    outcome, uncertain = classify(None, failure)
    duration_ms = (time.monotonic() - started) * 1000
    return CallResult(outcome, None, None, message, None, uncertain, duration_ms)


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:ERROR_TEXT_CHARS]
