"""The one HTTP client for participant calls, and the one place outcomes are classified.

2xx → succeeded. 408, 425, 429, 5xx, timeouts and connection errors → retryable.
Any other status (other 4xx, and a 3xx that is not followed) → permanent.
A timeout, a connection error or a 5xx is also *uncertain*: the call may have taken
effect, so a step whose retries run out that way is compensated.

SSRF guard at call time (sagas/engine/hosts.py): before each request, and each redirect
hop, the URL must pass `resolved_url_problem` (SAGA_ALLOWED_HOSTS, and no name resolving
to a link-local or metadata address); a refused URL is a permanent failure. Connections
are opened to the very addresses that were checked (no second DNS answer in between).
Redirects are followed only when `redirect_allowed` passes, at most MAX_REDIRECTS hops.
"""

import dataclasses
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

from django.conf import settings

from sagas.engine import hosts
from sagas.engine.retry import parse_retry_after
from sagas.models import Outcome

RETRYABLE_STATUSES = frozenset({408, 425, 429})
ERROR_TEXT_CHARS = 300
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# Headers that must not follow a redirect to another origin.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
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
        conn._create_connection = _pinned_connect  # the SSRF check's addresses, no others
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


def participant_call(
    request: ParticipantRequest, *, max_bytes: int, allowed_hosts: list[str] | None = None
) -> CallResult:
    """Make one call (bounded time, body read up to `max_bytes`) and classify it.

    Every hop's URL passes the call-time SSRF check first (`allowed_hosts` defaults to
    SAGA_ALLOWED_HOSTS). A redirect is followed when `hosts.redirect_allowed` passes: 307
    and 308 keep the method and body, 303 (and 301/302 after a POST) become a GET without
    a body (RFC 9110 §15.4); credentials are not sent on to another origin. Otherwise the
    3xx is the (permanent) outcome.
    """
    allowed = settings.SAGA_ALLOWED_HOSTS if allowed_hosts is None else allowed_hosts
    started = time.monotonic()
    for _hop in range(MAX_REDIRECTS + 1):
        problem = url_call_problem(request.url, allowed)
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
    url = urlsplit(request.url)
    remaining = request.timeout - (time.monotonic() - started)
    if remaining <= 0:
        return _failed("timeout", f"timed out after {request.timeout:g} s", started), None
    conn = _connection(url.scheme, url.hostname, url.port)
    try:
        status_code, body, headers = _exchange(conn, url, request, max_bytes, started, remaining)
    except TimeoutError:
        conn.close()
        return _failed("timeout", f"timed out after {request.timeout:g} s", started), None
    except ForbiddenAddress as exc:
        conn.close()
        return permanent_failure(f"URL {exc}"), None
    except (http.client.InvalidURL, ValueError) as exc:
        conn.close()  # refused before sending (bad characters in the URL or a header)
        return permanent_failure(f"invalid request: {_short(exc)}"), None
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return _failed("connection", f"connection failed: {_short(exc)}", started), None
    outcome, uncertain = classify(status_code)
    duration_ms = (time.monotonic() - started) * 1000
    if outcome == Outcome.SUCCEEDED:
        return CallResult(outcome, status_code, body, None, None, False, duration_ms), None
    location = headers.get("Location")
    result = CallResult(
        outcome,
        status_code,
        body,
        status_error(status_code, body, location),
        parse_retry_after(headers.get("Retry-After"), datetime.now(UTC)),
        uncertain,
        duration_ms,
    )
    return result, location


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
        headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
    return dataclasses.replace(request, method=method, url=target, body=body, headers=headers)


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


# Call-time SSRF check ----------------------------------------------------------------


class ForbiddenAddress(Exception):
    """A connection would go to a link-local or metadata address (not an OSError: it is
    a permanent refusal, not a retryable connection failure)."""


_resolve = socket.getaddrinfo  # the system resolver (a test may stand in for DNS)
_resolved: dict[tuple[str, int], tuple[float, list]] = {}
_verdicts: dict[tuple[str, tuple[str, ...]], tuple[float, str | None]] = {}


def url_call_problem(url: str, allowed_hosts: list[str]) -> str | None:
    """`hosts.resolved_url_problem` with its verdict kept RESOLVE_TTL_SECONDS (a dict
    lookup on the hot path; names are resolved through the same short cache)."""
    key = (url, tuple(allowed_hosts))
    now = time.monotonic()
    cached = _verdicts.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    problem = hosts.resolved_url_problem(url, allowed_hosts, resolve=_getaddrinfo_cached)
    _bounded(_verdicts)[key] = (now + RESOLVE_TTL_SECONDS, problem)
    return problem


def _getaddrinfo_cached(host: str, port: int, *args, **kwargs) -> list:
    """getaddrinfo for TCP, answered without a lookup for IP literals and from a short
    cache for names. A failed lookup raises (OSError) and is not cached."""
    literal = hosts.ip_literal(host)
    if literal is not None:
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 0, "", (host.strip("[]"), port))]
    key = (host, port)
    now = time.monotonic()
    cached = _resolved.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    infos = _resolve(host, port, type=socket.SOCK_STREAM)
    _bounded(_resolved)[key] = (now + RESOLVE_TTL_SECONDS, infos)
    return infos


def _bounded(cache: dict) -> dict:
    if len(cache) >= CACHE_MAX_ENTRIES:
        cache.clear()  # rare (thousands of distinct URLs in 10 s): start over
    return cache


def _pinned_connect(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None):
    """http.client's connect, to the addresses the check saw: a DNS answer that changes
    between the check and the connection (rebinding) cannot reach a forbidden address."""
    host, port = address
    infos = _getaddrinfo_cached(hosts.normal_host(host), port)
    for *_, sockaddr in infos:
        resolved = hosts.ip_literal(str(sockaddr[0]))
        if resolved is not None and hosts.forbidden_ip(resolved):
            raise ForbiddenAddress(f"host {host} resolves to a link-local or metadata address")
    error = OSError(f"{host} has no address")
    for *_, sockaddr in infos:
        try:
            return socket.create_connection(sockaddr[:2], timeout, source_address)
        except OSError as exc:
            error = exc
    raise error


def _exchange(conn, url, request: ParticipantRequest, max_bytes: int, started, remaining):
    conn.timeout = remaining  # connect, and each send/receive
    if conn.sock is not None:
        conn.sock.settimeout(remaining)
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
