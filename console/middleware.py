"""What every console response gets (DESIGN §9.7): its own rate limit, and headers that
keep its pages out of caches and frames and let them load only the service's own files.

The console's window is the API's numbers (RATE_LIMIT_MAX_REQUESTS per RATE_LIMIT_WINDOW)
counted per signed-in session, apart from the key's API budget; signed-out requests (the
sign-in form, a wrong key) count in the client IP's window, the one that unknown API keys
use: guessing keys costs the same in the console as in the API.
"""

from django.conf import settings
from django.template.response import TemplateResponse

from console import session
from sagas.api.throttling import (
    REQUEST_ATTR,
    client_ip,
    ip_bucket,
    key_fingerprint,
    parse_networks,
    window_hit,
)

PREFIX = "/console/"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)


def console_bucket(request) -> str:
    """Per session once signed in; per client IP before (sagas.api.throttling's buckets)."""
    if session.signed_in(request):
        return "console:" + key_fingerprint(
            key=request.session.session_key, secret=settings.SECRET_KEY
        )
    ip = client_ip(
        remote_addr=request.META.get("REMOTE_ADDR", ""),
        forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR", ""),
        trusted=parse_networks(tuple(settings.TRUSTED_PROXIES)),
    )
    return "ip:" + ip_bucket(ip)


def too_many_requests(request, window):
    response = TemplateResponse(
        request, "console/error.html", {"title": "Too many requests", "window": window}, status=429
    )
    return response.render()


class ConsoleMiddleware:
    """Counts, and on the way out marks, every request under /console/."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path_info.startswith(PREFIX):
            return self.get_response(request)
        window = window_hit(
            bucket=console_bucket(request),
            limit=settings.RATE_LIMIT_MAX_REQUESTS,
            window=settings.RATE_LIMIT_WINDOW,
        )
        setattr(request, REQUEST_ATTR, window)  # counted: the API's throttle counts no more
        if window is not None and not window.allowed:
            response = too_many_requests(request, window)
        else:
            response = self.get_response(request)
        if window is not None:
            for name, value in window.headers().items():
                response[name] = value
        return secured(response)


def secured(response):
    response["Cache-Control"] = "no-store"
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["X-Frame-Options"] = "DENY"
    response["Referrer-Policy"] = "same-origin"
    # Error pages of the console stay HTML (sagas.api.middleware.JsonErrorMiddleware).
    response.console_page = True
    return response
