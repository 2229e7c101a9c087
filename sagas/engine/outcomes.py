"""What a participant call came to, as data: the one place status codes are classified.

2xx → succeeded. 408, 425, 429, 5xx, timeouts and connection errors → retryable.
Any other status (other 4xx, and a 3xx that is not followed) → permanent.
*Uncertain* (the call may have taken effect) means exactly: a timeout after the request was
sent, a connection lost after sending, or a 5xx (DESIGN §4).

Pure: the engine's core (transitions) reads results through this module, never through
the HTTP client.
"""

import re
from dataclasses import dataclass
from typing import Any

from sagas.models import Outcome

RETRYABLE_STATUSES = frozenset({408, 425, 429})
# Characters PostgreSQL cannot store in text or jsonb: NUL, and lone surrogates.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Failures before a status arrived, for `classify`.
NOT_SENT = "not_sent"  # nothing left: refused, DNS, TLS, connect timeout
TIMEOUT = "timeout"  # sent, no complete answer in time
LOST = "connection"  # sent, then the connection broke


@dataclass(frozen=True)
class CallResult:
    outcome: str
    status_code: int | None = None
    response: Any = None
    error: str | None = None
    retry_after: float | None = None
    uncertain: bool = False
    duration_ms: float = 0.0
    # The response body's bytes as read (for `/logs/`, call_log.py); None without one.
    raw: bytes | None = None


def classify(status_code: int | None, failure: str | None = None) -> tuple[str, bool]:
    """(outcome, uncertain) of a call that got `status_code`, or failed with `failure`
    (NOT_SENT, TIMEOUT or LOST) before a status arrived."""
    if failure is not None:
        return Outcome.RETRYABLE_ERROR, failure != NOT_SENT
    if 200 <= status_code < 300:
        return Outcome.SUCCEEDED, False
    if status_code >= 500:
        return Outcome.RETRYABLE_ERROR, True
    if status_code in RETRYABLE_STATUSES:
        return Outcome.RETRYABLE_ERROR, False
    return Outcome.PERMANENT_ERROR, False


def permanent_failure(message: str) -> CallResult:
    """A call that could not be made at all (unresolved template, forbidden URL)."""
    return CallResult(outcome=Outcome.PERMANENT_ERROR, error=storable_text(message))


def storable_text(text: str) -> str:
    """`text` with NUL and lone surrogates (which PostgreSQL refuses) replaced by U+FFFD."""
    if text.isascii() and "\x00" not in text:
        return text
    return UNSTORABLE.sub("\ufffd", text)
