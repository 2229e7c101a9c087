"""Rate limiting (DESIGN §3, §6a): a fixed window of RATE_LIMIT_WINDOW seconds allowing
RATE_LIMIT_MAX_REQUESTS requests per API key, or per client IP for requests whose key is
missing or unknown.

Counting is one atomic Redis script (INCR, and PEXPIRE on the window's first request), so
every Gunicorn worker and API node shares one exact count; DRF's own throttles read, add
and write back, which lets several times the limit through under concurrency.

- Without REDIS_HOST (embedded default) windows are counted in this process only: each
  Gunicorn worker then allows the limit on its own.
- Redis unreachable: requests pass uncounted (availability first), one warning is logged
  per minute (`OutageWarning`), and the process's one breaker (sagas/redis_client.py) skips
  Redis for a moment; `rate_limit_degraded()` is true until some Redis call succeeds.
- Open endpoints (no authentication classes: health, status, docs, schema) are never limited,
  like views that set `throttle_classes = []`. `/metrics` limits only missing and unknown
  keys (`UnknownKeyRateThrottle`): scrapes do not spend the internal key's window.
- A request DRF refuses before its throttles run (401 for a missing or unknown key, 403,
  406) is counted by `exception_handler` through `throttled_before_view`, so guessing keys
  uses up the client IP's window.
- `RateLimitHeadersMiddleware` puts X-RateLimit-Limit/-Remaining/-Reset (and Retry-After on
  a 429) on every counted response, whatever the view returned.
"""

import hashlib
import hmac
import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from rest_framework import exceptions, throttling

from sagas.api.auth import role_for_key
from sagas.redis_client import OutageWarning, redis_breaker, redis_client

logger = logging.getLogger("sagas.ratelimit")

REDIS_KEY_PREFIX = "saga:ratelimit:"
# Where the throttle leaves the request's window for the middleware (on the Django request).
REQUEST_ATTR = "saga_rate_limit"

# INCR and, on the window's first hit, PEXPIRE; a key somehow left without a TTL gets one.
# It counts requests and nothing else (request figures are sagas/observability/
# request_stats.py's own concern, written by their own flusher).
COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Window:
    """One request's place in its window: `count` includes this request."""

    limit: int
    count: int
    reset_seconds: float

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def reset_after(self) -> int:
        """Whole seconds until the window ends (never 0 while it is running)."""
        return max(1, math.ceil(self.reset_seconds))

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_after)
        return headers


# --- Who is counted (pure) -------------------------------------------------------------


def parse_ip(value: str) -> IpAddress | None:
    """An address from REMOTE_ADDR or an X-Forwarded-For hop (`[v6]:port`, `v4:port` too)."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


@cache
def parse_networks(entries: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    """TRUSTED_PROXIES entries (IPs or CIDRs) as networks; settings.py validated them."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def client_ip(*, remote_addr: str, forwarded_for: str, trusted: tuple[IpNetwork, ...]) -> str:
    """The socket peer, unless it is a trusted proxy: then the right-most X-Forwarded-For
    hop that is not a trusted proxy (hops further left were written by the client)."""
    peer = parse_ip(remote_addr)
    if peer is None:
        return remote_addr.strip() or "unknown"
    if not _is_trusted(peer, trusted):
        return str(peer)
    hops = [hop for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            break  # garbage: the last trusted hop is the best we know
        if not _is_trusted(address, trusted):
            return str(address)
        peer = address
    return str(peer)


def _is_trusted(address: IpAddress, trusted: tuple[IpNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def ip_bucket(ip: str) -> str:
    """IPv6 clients are counted per /64: one host can use a whole /64 of addresses."""
    address = parse_ip(ip)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return ip


def key_fingerprint(*, key: str, secret: str) -> str:
    """What stands for an API key in Redis: a keyed hash, never the key itself."""
    digest = hmac.new(secret.encode(), key.encode("utf-8", "replace"), hashlib.sha256)
    return digest.hexdigest()[:32]


def rate_limit_bucket(*, api_key: str | None, key_known: bool, ip: str, secret: str) -> str:
    """Per key for a known key; per client IP when the key is missing or unknown."""
    if api_key and key_known:
        return "key:" + key_fingerprint(key=api_key, secret=secret)
    return "ip:" + ip_bucket(ip)


# --- Counting --------------------------------------------------------------------------


class _LocalWindows:
    """The embedded default: fixed windows in this process's memory."""

    MAX_BUCKETS = 10_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.windows: dict[str, tuple[int, float]] = {}

    def hit(self, *, bucket: str, limit: int, window: float) -> Window:
        now = time.monotonic()
        with self.lock:
            count, ends_at = self.windows.get(bucket, (0, 0.0))
            if ends_at <= now:
                count, ends_at = 0, now + window
            self.windows[bucket] = (count + 1, ends_at)
            if len(self.windows) > self.MAX_BUCKETS:
                self.windows = {b: w for b, w in self.windows.items() if w[1] > now}
        return Window(limit=limit, count=count + 1, reset_seconds=ends_at - now)


_warnings = OutageWarning(
    logger, "rate limiter: Redis unreachable, requests pass uncounted", event="rate_limit_degraded"
)
_local = _LocalWindows()


def rate_limit_degraded() -> bool:
    """True while Redis is configured and its last command in this process failed: the
    limiter lets requests through uncounted."""
    return redis_client() is not None and redis_breaker().down


@cache
def _count_script(client: redis.Redis):
    return client.register_script(COUNT_SCRIPT)


def window_hit(*, bucket: str, limit: int, window: float) -> Window | None:
    """Count one request in `bucket`'s window; None when Redis is unreachable."""
    client = redis_client()
    if client is None:
        return _local.hit(bucket=bucket, limit=limit, window=window)
    breaker = redis_breaker()
    if breaker.open():
        # Another user of Redis saw it fail: this request passes uncounted all the same,
        # and the operator is told so (once per interval), whoever failed first.
        _warnings.failed(breaker.last_error or redis.ConnectionError("Redis unreachable"))
        return None
    try:
        count, ttl_ms = _count_script(client)(
            keys=[REDIS_KEY_PREFIX + bucket], args=[max(1, int(window * 1000))]
        )
    except redis.RedisError as error:
        breaker.failed(error)
        _warnings.failed(error)
        return None
    breaker.succeeded()
    return Window(limit=limit, count=int(count), reset_seconds=int(ttl_ms) / 1000)


# --- DRF and Django glue ---------------------------------------------------------------


def request_bucket(request) -> str:
    """The bucket of a Django or DRF request (reads the key header itself: authentication
    may not have run, or may have refused the key)."""
    api_key = request.META.get("HTTP_X_API_KEY")
    ip = client_ip(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", ""),
        trusted=parse_networks(tuple(settings.TRUSTED_PROXIES)),
    )
    return rate_limit_bucket(
        api_key=api_key,
        key_known=bool(api_key) and role_for_key(api_key) is not None,
        ip=ip,
        secret=settings.SECRET_KEY,
    )


def _django_request(request):
    return getattr(request, "_request", request)


def rate_limit_counted(request) -> bool:
    return hasattr(_django_request(request), REQUEST_ATTR)


class ApiRateThrottle(throttling.BaseThrottle):
    """The limit of every authenticated API view (REST_FRAMEWORK DEFAULT_THROTTLE_CLASSES)."""

    window: Window | None = None

    def allow_request(self, request, view) -> bool:
        if not getattr(view, "authentication_classes", None):
            return True  # an open endpoint (health, status, docs, schema)
        return self.counted(request, request_bucket(request))

    def counted(self, request, bucket: str) -> bool:
        """Count the request in `bucket` (once per request); whether it is allowed."""
        django_request = _django_request(request)
        if not hasattr(django_request, REQUEST_ATTR):  # count each request once
            setattr(django_request, REQUEST_ATTR, None)
            setattr(
                django_request,
                REQUEST_ATTR,
                window_hit(
                    bucket=bucket,
                    limit=settings.RATE_LIMIT_MAX_REQUESTS,
                    window=settings.RATE_LIMIT_WINDOW,
                ),
            )
        self.window = getattr(django_request, REQUEST_ATTR)
        return self.window is None or self.window.allowed

    def wait(self) -> float | None:
        return self.window.reset_after if self.window else None


class UnknownKeyRateThrottle(ApiRateThrottle):
    """Only the per-IP limit of missing and unknown keys (guessing), for views whose
    known callers must not spend their key's window: /metrics, scraped every few seconds
    with the internal key."""

    def allow_request(self, request, view) -> bool:
        if not request_bucket(request).startswith("ip:"):
            return True  # a known key: not counted here
        return super().allow_request(request, view)


class ClientIpRateThrottle(ApiRateThrottle):
    """Per client IP whatever key is sent, for an endpoint without API keys: an
    asynchronous step's callback, whose token is its credential (DESIGN §9.4)."""

    def allow_request(self, request, view) -> bool:
        ip = client_ip(
            remote_addr=request.META.get("REMOTE_ADDR", ""),
            forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", ""),
            trusted=parse_networks(tuple(settings.TRUSTED_PROXIES)),
        )
        return self.counted(request, "ip:" + ip_bucket(ip))


def throttled_before_view(exc: Exception, context: dict) -> exceptions.Throttled | None:
    """DRF checks throttles after authentication and permissions, so a request refused
    there (401, 403, 406) was not counted: count it now; Throttled if it is over the limit."""
    view, request = context.get("view"), context.get("request")
    if view is None or request is None or isinstance(exc, exceptions.Throttled):
        return None
    if rate_limit_counted(request):
        return None
    try:
        view.check_throttles(request)
    except exceptions.Throttled as throttled:
        return throttled
    return None


class RateLimitHeadersMiddleware:
    """Adds the counted window's headers to the response (429s and 401s included)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        window = getattr(request, REQUEST_ATTR, None)
        if window is not None:
            for name, value in window.headers().items():
                response[name] = value
        return response
