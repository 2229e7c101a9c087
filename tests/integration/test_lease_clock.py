"""Issue 8 item 15: lease times are the database's clock on PostgreSQL, so a worker host
whose clock runs ahead cannot take over a live lease (nor claim work early). Each engine
function takes the worker's clock as `now`; here it is 60 s ahead. (SQLite, the embedded
default, is one host with one clock: claim.py says why `now` is used there; the last test
holds on both.)"""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from sagas.engine.store import (
    lease_release,
    lease_renew,
    next_due_at,
    saga_claim,
    transition_record,
)
from tests.saga_builders import call, definition_create, saga_create, saga_get, step

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sqlite]

# The worker's `now` is the clock on SQLite, so a skewed worker has nothing to disagree with.
ON_DB_CLOCK = pytest.mark.not_on_sqlite(
    "the database's clock: SQLite is one host, one clock (test_on_one_clock_a_live_lease_…)"
)
AHEAD = timedelta(seconds=60)
LEASE = 30.0


def db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def assert_by_db_clock(moment, seconds: float):
    """`moment` is `seconds` after the database's now (give or take the test's own pace)."""
    expected = db_now() + timedelta(seconds=seconds)
    assert abs((moment - expected).total_seconds()) < 2, (moment, expected)


def waiting_saga(**fields):
    definition = definition_create([step("one", call("http://127.0.0.1:9/one"))])
    return saga_create(definition, **fields)


@ON_DB_CLOCK
def test_a_worker_whose_clock_runs_ahead_cannot_take_a_live_lease():
    saga = waiting_saga()
    holder = saga_claim(owner="holder", now=timezone.now(), lease_seconds=LEASE)
    assert holder is not None

    # By its own clock the holder's lease ran out 30 s ago.
    assert saga_claim(owner="ahead", now=timezone.now() + AHEAD, lease_seconds=LEASE) is None

    held = saga_get(saga)
    assert held.lease_owner == "holder" and held.lease_token == holder.lease.token
    assert_by_db_clock(held.lease_expires_at, LEASE)


@ON_DB_CLOCK
def test_a_worker_whose_clock_runs_ahead_claims_nothing_before_it_is_due():
    saga = waiting_saga(next_attempt_at=db_now() + timedelta(seconds=30))

    assert saga_claim(owner="ahead", now=timezone.now() + AHEAD, lease_seconds=LEASE) is None
    assert saga_get(saga).lease_token is None
    # Idle workers sleep until then by their own clock: 30 s from now, not 30 s ago.
    assert timezone.now() + timedelta(seconds=28) < next_due_at() <= timezone.now() + AHEAD


@ON_DB_CLOCK
def test_every_lease_time_a_skewed_worker_writes_is_by_the_database_clock():
    saga = waiting_saga()
    ahead = timezone.now() + AHEAD
    claimed = saga_claim(owner="ahead", now=ahead, lease_seconds=LEASE)
    assert_by_db_clock(saga_get(saga).lease_expires_at, LEASE)
    claimed_due = saga_get(saga).next_attempt_at

    assert lease_renew(lease=claimed.lease, now=ahead, lease_seconds=LEASE)
    renewed = saga_get(saga)
    assert_by_db_clock(renewed.lease_expires_at, LEASE)
    # Held, its due time stays as claimed; idle workers sleep until the lease runs out.
    assert renewed.next_attempt_at == claimed_due
    assert sleeps_until_the_lease_ends()

    state = claimed.state
    transition_record(
        lease=claimed.lease, before=state.status, state=state, now=ahead, lease_seconds=LEASE
    )
    recorded = saga_get(saga)
    assert_by_db_clock(recorded.lease_expires_at, LEASE)
    assert recorded.next_attempt_at == claimed_due
    assert sleeps_until_the_lease_ends()

    assert lease_release(lease=claimed.lease, now=ahead, delay_seconds=5)
    released = saga_get(saga)
    assert released.lease_token is None and released.lease_expires_at is None
    assert_by_db_clock(released.next_attempt_at, 5)


def test_on_one_clock_a_live_lease_is_kept_and_nothing_is_claimed_before_it_is_due():
    """What the tests above guard, with no skew: it holds on both databases."""
    saga = waiting_saga()
    later = waiting_saga(next_attempt_at=timezone.now() + timedelta(seconds=30))
    holder = saga_claim(owner="holder", now=timezone.now(), lease_seconds=LEASE)
    assert holder is not None and holder.lease.saga_id == saga.id

    assert saga_claim(owner="other", now=timezone.now(), lease_seconds=LEASE) is None

    held = saga_get(saga)
    assert held.lease_owner == "holder" and held.lease_token == holder.lease.token
    expected = timezone.now() + timedelta(seconds=LEASE)
    assert abs((held.lease_expires_at - expected).total_seconds()) < 2
    assert saga_get(later).lease_token is None
    # Idle workers sleep until the earlier of the two: the held lease's end or `later`.
    assert timezone.now() + timedelta(seconds=28) < next_due_at() <= expected


def sleeps_until_the_lease_ends() -> bool:
    due = next_due_at()
    return (
        timezone.now() + timedelta(seconds=LEASE - 5)
        < due
        <= timezone.now() + timedelta(seconds=LEASE + 1)
    )
