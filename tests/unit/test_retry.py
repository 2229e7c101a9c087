from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sagas.engine.retry import (
    JITTER,
    RetryPolicy,
    backoff_seconds,
    parse_retry_after,
    retry_delay,
)

POLICY = RetryPolicy(max_attempts=5, delay_seconds=1.0, backoff_multiplier=2.0, max_delay_seconds=5)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_backoff_grows_exponentially_from_the_first_attempt_and_is_capped():
    assert [backoff_seconds(POLICY, n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_backoff_never_overflows():
    huge = RetryPolicy(100, 3600, 10, 86400)
    assert backoff_seconds(huge, 10_000) == 86400


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_jitter_only_shortens_within_bounds(rand):
    delay = retry_delay(POLICY, 2, retry_after=None, rand=rand)
    assert 2 * (1 - JITTER) <= delay <= 2


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_jitter_never_goes_below_retry_after(rand):
    assert retry_delay(POLICY, 1, retry_after=3.0, rand=rand) >= 3.0


def test_a_shorter_retry_after_does_not_shorten_the_backoff():
    assert retry_delay(POLICY, 3, retry_after=0.1, rand=0.0) == 4.0


def test_zero_delay_retries_at_once():
    assert retry_delay(RetryPolicy(3, 0, 2, 60), 2, retry_after=None, rand=0.7) == 0


def test_parse_retry_after_seconds_and_http_dates():
    assert parse_retry_after("7", NOW) == 7.0
    assert parse_retry_after(" 1.5 ", NOW) == 1.5
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=30), usegmt=True), NOW) == 30
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=30), usegmt=True), NOW) == 0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("nan", NOW) is None
