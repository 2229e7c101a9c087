"""What `/logs/` keeps of a call (DESIGN §9.6): the headers sent, with credentials
redacted, and the request and response bodies, each cut at SAGA_LOG_BODY_BYTES. Pure.

A body is kept as the JSON it was when it fits the limit, else as the text of its first
SAGA_LOG_BODY_BYTES bytes (and the attempt is `truncated`); 0 keeps no body at all.
"""

import functools
from typing import Any

from sagas.engine.outcomes import storable_text

REDACTED = "***"
# Always redacted: credentials a definition may send, and the service's own.
REDACT_ALWAYS = ("authorization", "cookie", "x-api-key", "x-saga-callback-token")


@functools.cache
def redacted_names(extra: tuple[str, ...]) -> frozenset[str]:
    """The lower-cased header names whose values are never stored (`extra`: the
    SAGA_REDACT_HEADERS names)."""
    return frozenset(REDACT_ALWAYS) | {name.strip().lower() for name in extra if name.strip()}


def logged_headers(headers: dict[str, str], extra: tuple[str, ...]) -> dict[str, str]:
    names = redacted_names(extra)
    return {k: REDACTED if k.lower() in names else v for k, v in headers.items()}


def logged_body(value: Any, raw: bytes | None, limit: int) -> tuple[Any, bool]:
    """(what is kept of a body, whether it was cut): `value` is the body as parsed (JSON
    or text), `raw` its bytes as sent or read; the parsed value is reused when it fits,
    so a small body costs no second encoding."""
    if not raw:
        return None, False
    if len(raw) <= limit:
        return value, False
    if limit <= 0:
        return None, True
    # A cut may split a UTF-8 sequence: its bytes are dropped, not replaced.
    return storable_text(raw[:limit].decode("utf-8", errors="ignore")), True
