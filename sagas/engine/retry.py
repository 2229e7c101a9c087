"""When to try a call again: exponential backoff, jitter, Retry-After, caps. Pure.

Attempts count the first call: after attempt n failed, the wait before attempt n+1 is
`delay × multiplier^(n-1)`, capped at `max_delay`, shortened by up to JITTER (so that
sagas failing together do not retry together) but never below the participant's
Retry-After.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

JITTER = 0.2
# A participant asking for more than a day is not taken literally.
MAX_RETRY_AFTER = 86400.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    delay_seconds: float
    backoff_multiplier: float
    max_delay_seconds: float


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """The un-jittered wait after `attempt` failed calls (attempt ≥ 1)."""
    try:
        raw = policy.delay_seconds * policy.backoff_multiplier ** max(attempt - 1, 0)
    except OverflowError:
        raw = math.inf
    return min(raw, policy.max_delay_seconds)


def retry_delay(
    policy: RetryPolicy, attempt: int, *, retry_after: float | None, rand: float
) -> float:
    """Seconds to wait before the next attempt; `rand` in [0, 1) picks the jitter."""
    delay = backoff_seconds(policy, attempt) * (1.0 - JITTER * rand)
    if retry_after is not None:
        # Jitter only ever lengthens a Retry-After, never shortens it.
        floor = min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        delay = max(delay, floor * (1.0 + JITTER * rand))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0) if math.isfinite(float(value)) else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)
