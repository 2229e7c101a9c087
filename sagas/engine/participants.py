"""The one HTTP client for participant calls (outcomes are classified in outcomes.py).

Which failures are uncertain: outcomes.py; this module tells them apart (nothing sent,
sent then timed out, sent then the connection broke).

The call's timeout bounds the whole call: connect, send, wait, read the whole body.
Connections are kept alive per thread (sagas/engine/connections.py); a reused one that the
participant had closed is replaced before sending. A close that races the request (reset
before any answer) is a connection lost after sending: never re-sent within the attempt,
so a participant sees each attempt at most once (DESIGN §5.2).
Whatever the participant returns is kept storable (PostgreSQL jsonb): a body that is not
storable JSON is kept as text (at most TEXT_MAX_BYTES, NUL and invalid UTF-8 replaced).

SSRF guard at call time (sagas/engine/hosts.py): before each request, and each redirect
hop, the URL must pass `resolved_url_problem` (SAGA_ALLOWED_HOSTS, and no name resolving
to a link-local or metadata address); a refused URL is a permanent failure. Connections
are opened to the very addresses that were checked (no second DNS answer in between).
Redirects are followed only when `redirect_allowed` passes, at most MAX_REDIRECTS hops;
one that leaves the origin carries only Content-Type and the service's own headers (the
callback token excepted: it stays with the participant it was made for).
"""

import dataclasses
import http.client
import json
import logging
import math
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from django.conf import settings

from sagas.engine import hosts
from sagas.engine.connections import (
    NotSent,
    PinnedConnection,
    PinnedTLSConnection,
    thread_pool,
)
from sagas.engine.outcomes import (
    LOST,
    NOT_SENT,
    TIMEOUT,
    CallResult,
    classify,
    permanent_failure,
    storable_text,
)
from sagas.engine.retry import parse_retry_after
from sagas.jsonutil import json_value_problem
from sagas.models import Outcome

logger = logging.getLogger("sagas.engine")

ERROR_TEXT_CHARS = 300
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# Headers that follow a redirect to another origin: the body's type and the service's own.
CROSS_ORIGIN_HEADERS = frozenset(
    {"content-type", "idempotency-key", "x-request-id", "traceparent", "tracestate"}
)
CROSS_ORIGIN_PREFIX = "x-saga-"
# …but never the callback token: a credential for this service, for the participant only.
CROSS_ORIGIN_NEVER = frozenset({"x-saga-callback-token"})
# A body that is not storable JSON is kept as text, cut at this many bytes.
TEXT_MAX_BYTES = 64 * 1024
# How long a name's resolution (and a URL's verdict) is trusted: short enough to follow
# DNS changes, long enough that the hot path resolves each participant host rarely.
RESOLVE_TTL_SECONDS = 10.0
CACHE_MAX_ENTRIES = 4096


@dataclass(frozen=True)
class ParticipantRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout: float
    # The body as rendered (before encoding): what `/logs/` keeps of it, with no re-parse.
    payload: Any = None


def parse_body(raw: bytes) -> Any:
    """JSON when it parses and PostgreSQL can store it, text otherwise, None when empty."""
    if not raw:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # invalid UTF-8 or JSON; nested past the stack
        return body_text(raw)
    if json_value_problem(value) is not None:  # NaN, NUL, lone surrogate, too deep
        return body_text(raw)
    return value


def body_text(raw: bytes) -> str:
    """A body as storable text: its first TEXT_MAX_BYTES, invalid UTF-8 and NUL replaced."""
    return storable_text(raw[:TEXT_MAX_BYTES].decode("utf-8", errors="replace"))


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
        where = storable_text(location or "(no Location)")
        return f"HTTP {status_code}: redirect to {where} not followed"
    text = error_text(body)
    return f"HTTP {status_code}: {text}" if text else f"HTTP {status_code}"


def participant_call(
    request: ParticipantRequest, *, max_bytes: int, allowed_hosts: list[str] | None = None
) -> CallResult:
    """Make one call (done within `request.timeout`, body read up to `max_bytes`) and
    classify it. Never raises.

    Every hop's URL passes the call-time SSRF check first (`allowed_hosts` defaults to
    SAGA_ALLOWED_HOSTS). A redirect is followed when `hosts.redirect_allowed` passes: 307
    and 308 keep the method and body, 303 (and 301/302 after a POST) become a GET without
    a body (RFC 9110 §15.4); to another origin, only Content-Type and the service's own
    headers go on. Otherwise the 3xx is the (permanent) outcome.
    """
    allowed = settings.SAGA_ALLOWED_HOSTS if allowed_hosts is None else allowed_hosts
    started = time.monotonic()
    for _hop in range(MAX_REDIRECTS + 1):
        problem = url_call_problem(request.url, allowed, started + request.timeout)
        if problem:
            return permanent_failure(f"URL {problem}")
        result, location = _call_once(request, max_bytes, started)
        target = _redirect_target(result, location, request.url, allowed)
        if target is None:
            return result
        request = _redirected(request, result.status_code, target)
    duration_ms = (time.monotonic() - started) * 1000
    error = f"more than {MAX_REDIRECTS} redirects"
    return CallResult(
        Outcome.PERMANENT_ERROR, result.status_code, None, error, None, False, duration_ms
    )


def _call_once(request: ParticipantRequest, max_bytes: int, started: float):
    """One request/response exchange: (its classified result, its Location header)."""
    deadline = started + request.timeout
    if time.monotonic() >= deadline:  # redirect hops used the time up: not sent
        return _failed(NOT_SENT, f"timed out after {request.timeout:g} s", started), None
    url = urlsplit(request.url)
    conn = _connection(url)
    conn.begin(deadline)
    try:
        status_code, raw, headers = _exchange(conn, url, request, max_bytes)
    except Exception as exc:  # every failure becomes a result: nothing escapes the client
        conn.close()
        return _failure(exc, request.timeout, started), None
    return _classified(status_code, raw, max_bytes, headers, started)


def _classified(status_code: int, raw: bytes, max_bytes: int, headers, started: float):
    """`raw`: the body as read (one byte past `max_bytes` when it was longer)."""
    body = parse_body(raw[:max_bytes])
    outcome, uncertain = classify(status_code)
    duration_ms = (time.monotonic() - started) * 1000
    if outcome == Outcome.SUCCEEDED:
        return CallResult(outcome, status_code, body, None, None, False, duration_ms, raw), None
    location = headers.get("Location")
    result = CallResult(
        outcome,
        status_code,
        body,
        status_error(status_code, body, location),
        parse_retry_after(headers.get("Retry-After"), datetime.now(UTC)),
        uncertain,
        duration_ms,
        raw,
    )
    return result, location


def _failure(exc: Exception, timeout: float, started: float) -> CallResult:
    """The result of a call that ended in `exc` before a complete answer arrived."""
    if isinstance(exc, NotSent):
        return _failed(NOT_SENT, _not_sent_error(exc.reason, timeout), started)
    if isinstance(exc, TimeoutError):
        return _failed(TIMEOUT, f"timed out after {timeout:g} s", started)
    if isinstance(exc, ForbiddenAddress):
        return permanent_failure(f"URL {exc}")
    if isinstance(exc, http.client.InvalidURL | ValueError):
        # Refused by http.client before sending: bad characters in the URL or a header.
        return permanent_failure(f"invalid request: {_short(exc)}")
    if isinstance(exc, OSError | http.client.HTTPException):
        return _failed(LOST, f"connection failed: {_short(exc)}", started)
    logger.error("participant call failed unexpectedly", exc_info=exc)
    return _failed(LOST, f"call failed: {_short(exc)}", started)  # it may have been sent


def _not_sent_error(reason: OSError, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s before the request was sent"
    return f"connection failed: {_short(reason)}"


def _redirect_target(result: CallResult, location, base_url: str, allowed) -> str | None:
    """The URL to follow, or None when the answer is final (not a redirect, or refused)."""
    if result.status_code not in REDIRECT_STATUSES or not location:
        return None
    if not hosts.redirect_allowed(location, allowed, base_url):
        return None
    return hosts.redirect_target(location, base_url)


def _redirected(request: ParticipantRequest, status_code: int, target: str):
    method, body, headers = request.method, request.body, request.headers
    if status_code == 303 or (status_code in (301, 302) and method == "POST"):
        method, body = "GET", None
    if _origin(target) != _origin(request.url):
        # Any header a definition set may be a credential (X-Api-Token, X-Signature…).
        headers = {k: v for k, v in headers.items() if _crosses_origins(k)}
    return dataclasses.replace(request, method=method, url=target, body=body, headers=headers)


def _crosses_origins(name: str) -> bool:
    name = name.lower()
    if name in CROSS_ORIGIN_NEVER:
        return False
    return name in CROSS_ORIGIN_HEADERS or name.startswith(CROSS_ORIGIN_PREFIX)


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


# Connections ---------------------------------------------------------------------------


def connect_target(url: SplitResult) -> tuple[str, int]:
    """(host, port) to connect to: the host without brackets (an IPv6 literal stays
    whole), the port explicit (the scheme's default when the URL has none)."""
    port = url.port or (http.client.HTTPS_PORT if url.scheme == "https" else 80)
    return url.hostname, port


def _connection(url: SplitResult) -> PinnedConnection:
    """The calling thread's keep-alive connection to the URL's origin.

    The standard library's client: one send and one receive per call (a third of the CPU
    of urllib3, a fifth of requests'), no proxy or netrc lookups, no redirects.
    """
    host, port = connect_target(url)

    def create() -> PinnedConnection:
        if url.scheme == "https":
            return PinnedTLSConnection(host, port, _checked_addresses, _tls_context())
        return PinnedConnection(host, port, _checked_addresses)

    return thread_pool().get((url.scheme, host, port), create)


_local = threading.local()


def _tls_context() -> ssl.SSLContext:
    context = getattr(_local, "tls", None)
    if context is None:
        context = _local.tls = ssl.create_default_context()
    return context


def _exchange(conn: PinnedConnection, url: SplitResult, request, max_bytes: int):
    """(status, body as read, headers) of one request on `conn`: the body's first
    `max_bytes` and one more byte when it is longer."""
    response = _response(conn, url, request)
    raw = response.read(max_bytes + 1)
    if len(raw) > max_bytes or response.will_close:
        conn.close()  # the rest of a too-long body is dropped with the connection
    return response.status, raw, response.headers


def _response(conn: PinnedConnection, url: SplitResult, request) -> http.client.HTTPResponse:
    if conn.sock is None:
        conn.connect()  # NotSent when it fails: nothing of the request has left
    target = url.path or "/"
    if url.query:
        target = f"{target}?{url.query}"
    # Header values from templates may be non-ASCII: sent as UTF-8 bytes.
    headers = {k: v if v.isascii() else v.encode() for k, v in request.headers.items()}
    conn.request(request.method, target, body=request.body, headers=headers)
    return conn.getresponse()


def _failed(failure: str, message: str, started: float) -> CallResult:
    outcome, uncertain = classify(None, failure)
    duration_ms = (time.monotonic() - started) * 1000
    return CallResult(outcome, None, None, message, None, uncertain, duration_ms)


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return storable_text(text[:ERROR_TEXT_CHARS])


# Call-time SSRF check ----------------------------------------------------------------


class ForbiddenAddress(Exception):
    """A connection would go to a link-local or metadata address (not an OSError: it is
    a permanent refusal, not a retryable connection failure)."""


_resolve = socket.getaddrinfo  # the system resolver (a test may stand in for DNS)
_resolved: dict[tuple[str, int], tuple[float, list]] = {}
_verdicts: dict[tuple[str, tuple[str, ...]], tuple[float, str | None]] = {}


def url_call_problem(url: str, allowed_hosts: list[str], deadline: float = math.inf) -> str | None:
    """`hosts.resolved_url_problem` with its verdict kept RESOLVE_TTL_SECONDS (a dict
    lookup on the hot path; names are resolved through the same short cache, each lookup
    given up at `deadline`: the call then fails as not sent when it would connect)."""
    key = (url, tuple(allowed_hosts))
    now = time.monotonic()
    cached = _verdicts.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]

    def resolve(host: str, port: int, **_kwargs) -> list:
        return _getaddrinfo_cached(host, port, deadline)

    problem = hosts.resolved_url_problem(url, allowed_hosts, resolve=resolve)
    if time.monotonic() < deadline:  # a lookup given up on proves nothing: not kept
        _bounded(_verdicts)[key] = (now + RESOLVE_TTL_SECONDS, problem)
    return problem


def _getaddrinfo_cached(host: str, port: int, deadline: float = math.inf) -> list:
    """getaddrinfo for TCP, answered without a lookup for IP literals and from a short
    cache for names. A failed lookup raises (OSError) and is not cached; one still running
    at `deadline` raises TimeoutError (the system resolver has no timeout of its own that
    the call's could bound)."""
    literal = hosts.ip_literal(host)
    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 0, "", (host.strip("[]"), port))]
    key = (host, port)
    now = time.monotonic()
    cached = _resolved.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    infos = _lookup(host, port, deadline)
    _bounded(_resolved)[key] = (now + RESOLVE_TTL_SECONDS, infos)
    return infos


def _lookup(host: str, port: int, deadline: float) -> list:
    """`_resolve` for TCP, waited for until `deadline` at most. The lookup runs in a daemon
    thread of its own (rare: answers are cached), which a stuck resolver keeps only until
    the system's own resolver timeout; it never holds up the process's exit."""
    if deadline == math.inf:
        return _resolve(host, port, type=socket.SOCK_STREAM)
    answer: dict = {}

    def run() -> None:
        try:
            answer["infos"] = _resolve(host, port, type=socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the waiting caller
            answer["error"] = exc

    lookup = threading.Thread(target=run, name="saga-resolve", daemon=True)
    lookup.start()
    lookup.join(max(deadline - time.monotonic(), 0))
    if lookup.is_alive():
        raise TimeoutError(f"resolving {host} took longer than the call's timeout")
    if "error" in answer:
        raise answer["error"]
    return answer["infos"]


def _bounded(cache: dict) -> dict:
    if len(cache) >= CACHE_MAX_ENTRIES:
        cache.clear()  # rare (thousands of distinct URLs in 10 s): start over
    return cache


def _checked_addresses(host: str, port: int, deadline: float = math.inf) -> list:
    """The addresses a connection to `host` may use: those the check saw (the same short
    cache), so a DNS answer that changes between the check and the connection
    (rebinding) cannot reach a forbidden address."""
    infos = _getaddrinfo_cached(hosts.normal_host(host), port, deadline)
    for *_, sockaddr in infos:
        resolved = hosts.ip_literal(str(sockaddr[0]))
        if resolved is not None and hosts.forbidden_ip(resolved):
            raise ForbiddenAddress(f"host {host} resolves to a link-local or metadata address")
    return infos
