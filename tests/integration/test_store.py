"""The store (sagas/engine/store/): fenced writes, the cancel watch, and group commit —
every row of a batch fenced and checked, one saga's unstorable value failing only that
saga, an idle writer committing at once."""

import threading
import time
from datetime import timedelta

import psycopg2
import pytest
from django.db import DataError, connection
from django.utils import timezone

from sagas.engine import store
from sagas.engine.transitions import INTERRUPTED, Call, call_start
from sagas.models import SagaAttempt, SagaInstance
from sagas.selectors import saga_attempt_list
from tests.saga_builders import (
    call,
    definition_create,
    in_thread,
    saga_create,
    saga_get,
    step,
)

pytestmark = pytest.mark.django_db(transaction=True)
LEASE = 30.0


def claimed_saga():
    definition = definition_create([step("one", call("http://127.0.0.1:9/one"))])
    saga = saga_create(definition)
    claimed = store.saga_claim(owner="w", now=timezone.now(), lease_seconds=LEASE)
    assert claimed is not None and claimed.lease.saga_id == saga.id
    return claimed


def record(claimed, *, steps=None, writer=None, release=False):
    """Record the first call as in flight."""
    first = Call("action", 0, 1)
    state = call_start(claimed.state, first, timezone.now())
    if steps is not None:
        state.steps = steps
    opened = store.AttemptOpen(first, "one", "POST", "http://127.0.0.1:9/one", timezone.now())
    store.transition_record(
        lease=claimed.lease,
        before=claimed.state.status,
        state=state,
        now=timezone.now(),
        lease_seconds=LEASE,
        opened=opened,
        writer=writer,
        release=release,
    )


def attempts(saga):
    """The saga's calls as /logs/ shows them (the one in flight included)."""
    return saga_attempt_list(saga_id=saga.id)


def steal(claimed):
    """Another worker took the lease over."""
    SagaInstance.objects.filter(id=claimed.lease.saga_id).update(lease_token=None)


@pytest.mark.sqlite
def test_a_stale_lease_token_writes_nothing():
    claimed = claimed_saga()
    steal(claimed)

    with pytest.raises(store.LeaseLost):
        record(claimed)

    saga = saga_get(SagaInstance(id=claimed.lease.saga_id))
    assert saga.status == "pending" and attempts(saga) == []
    assert store.lease_renew(lease=claimed.lease, now=timezone.now(), lease_seconds=LEASE) is False
    assert store.lease_release(lease=claimed.lease, now=timezone.now(), delay_seconds=1) is False


@pytest.mark.sqlite
def test_an_accepted_cancel_stops_a_write_that_does_not_know_of_it():
    claimed = claimed_saga()
    SagaInstance.objects.filter(id=claimed.lease.saga_id).update(cancel_requested=True)

    with pytest.raises(store.ControlRequested) as missed:
        record(claimed)
    assert missed.value.cancel_requested and missed.value.pause_request is None
    saga = saga_get(SagaInstance(id=claimed.lease.saga_id))
    assert saga.status == "pending" and attempts(saga) == []

    claimed.state.cancel_requested = True  # known now: the write goes through
    record(claimed)
    assert [a.outcome for a in attempts(saga)] == [None]


@pytest.mark.sqlite
def test_an_accepted_pause_stops_a_write_that_does_not_know_of_it():
    claimed = claimed_saga()
    request = {"actor": "internal", "key_id": "0123abcd", "reason": "check the address"}
    SagaInstance.objects.filter(id=claimed.lease.saga_id).update(pause_request=request)

    with pytest.raises(store.ControlRequested) as missed:
        record(claimed)
    assert missed.value.pause_request == request and not missed.value.cancel_requested

    claimed.state.pause_request = request  # known now: the write goes through
    record(claimed)
    saga = saga_get(SagaInstance(id=claimed.lease.saga_id))
    assert [a.outcome for a in attempts(saga)] == [None]


@pytest.mark.sqlite
def test_an_attempt_row_is_written_once_with_its_outcome():
    claimed = claimed_saga()
    record(claimed)
    saga = SagaInstance(id=claimed.lease.saga_id)
    assert SagaAttempt.objects.filter(saga_id=saga.id).count() == 0  # in the saga row only
    in_flight = attempts(saga)
    assert [(a.step, a.attempt, a.method, a.outcome) for a in in_flight] == [
        ("one", 1, "POST", None)
    ]

    close(claimed, in_flight[0].started_at)

    rows = list(SagaAttempt.objects.filter(saga_id=saga.id))
    assert [(a.step, a.attempt, a.method, a.url, a.outcome) for a in rows] == [
        ("one", 1, "POST", "http://127.0.0.1:9/one", "interrupted")
    ]
    assert rows[0].started_at == in_flight[0].started_at
    assert [a.outcome for a in attempts(saga)] == ["interrupted"]


@pytest.mark.sqlite
def test_a_row_an_earlier_version_inserted_in_flight_is_completed_not_repeated():
    claimed = claimed_saga()
    record(claimed)
    saga = SagaInstance(id=claimed.lease.saga_id)
    # As the earlier version left it: a bare mark, and the row inserted before the call.
    steps = saga_get(saga).steps
    steps[0]["in_flight"] = True
    SagaInstance.objects.filter(id=saga.id).update(steps=steps)
    SagaAttempt.objects.create(
        saga_id=saga.id, step="one", step_index=0, phase="action", attempt=1, method="POST",
        url="http://127.0.0.1:9/one", started_at=timezone.now(),
    )  # fmt: skip
    assert [a.outcome for a in attempts(saga)] == [None]

    close(claimed, None)

    assert [a.outcome for a in attempts(saga)] == ["interrupted"]


def close(claimed, started_at):
    """Write the first call's end (as recovery does after a crash: interrupted)."""
    first = Call("action", 0, 1)
    opened = None  # the earlier version's row: completed, not inserted
    if started_at is not None:
        opened = store.AttemptOpen(first, "one", "POST", "http://127.0.0.1:9/one", started_at)
    state = call_start(claimed.state, first, timezone.now())
    state.steps[0].pop("in_flight")
    store.transition_record(
        lease=claimed.lease,
        before=state.status,
        state=state,
        now=timezone.now(),
        lease_seconds=LEASE,
        closed=store.AttemptClose(first, "one", INTERRUPTED, opened),
    )


@pytest.mark.sqlite
def test_an_idle_writer_commits_a_lone_transition_at_once():
    claimed = claimed_saga()
    writer = store.GroupWriter()
    writer.start()
    try:
        began = time.monotonic()
        record(claimed, writer=writer)
        took = time.monotonic() - began
    finally:
        writer.stop()

    assert writer.batches == 1
    assert took < 0.5  # no timer waits for company
    saga = saga_get(SagaInstance(id=claimed.lease.saga_id))
    assert saga.steps[0]["in_flight"]["attempt"] == 1
    assert [(a.step, a.attempt, a.outcome) for a in attempts(saga)] == [("one", 1, None)]


def test_a_batch_with_a_stale_row_and_an_unstorable_value_commits_the_others():
    good, stale, unstorable = claimed_saga(), claimed_saga(), claimed_saga()
    steal(stale)
    writer = store.GroupWriter()
    writer.start()
    try:
        errors = batch_of_three(writer, good, stale, unstorable)
    finally:
        writer.stop()

    assert set(errors) == {"stale", "unstorable"}
    assert isinstance(errors["stale"], store.LeaseLost)
    assert isinstance(errors["unstorable"], DataError)
    kept = saga_get(SagaInstance(id=good.lease.saga_id))
    assert kept.status == "running" and [a.outcome for a in attempts(kept)] == [None]
    for claimed in (stale, unstorable):
        untouched = saga_get(SagaInstance(id=claimed.lease.saga_id))
        assert untouched.status == "pending" and attempts(untouched) == []


def batch_of_three(writer, good, stale, unstorable) -> dict:
    # Hold the writer busy so that the three writes queue up and form one batch.
    busy, resume = threading.Event(), threading.Event()

    def blocker():
        busy.set()
        resume.wait(10)
        return 1

    holding = in_thread(writer.write, blocker)
    busy.wait(5)
    errors = {}

    def write(name, claimed, **kwargs):
        try:
            record(claimed, writer=writer, **kwargs)
        except Exception as exc:
            errors[name] = exc

    bad_steps = [dict(unstorable.state.steps[0], response="\u0000 not in jsonb")]
    threads = [
        in_thread(write, "good", good),
        in_thread(write, "stale", stale),
        in_thread(lambda: write("unstorable", unstorable, steps=bad_steps)),
    ]
    wait_for_queue(writer, 3)
    resume.set()
    for thread in [holding, *threads]:
        thread.join(10)
    return errors


def wait_for_queue(writer, count):
    deadline = time.monotonic() + 5
    while writer._queue.qsize() < count:
        assert time.monotonic() < deadline, "the writes did not queue"
        time.sleep(0.01)


def test_a_connection_lost_before_the_batch_commits_leaves_nothing_half_written():
    """A batch is one transaction: cut off before COMMIT (as by kill -9 of the database
    session), none of it is visible; the writer then commits the sound items one by one."""
    first, second = claimed_saga(), claimed_saga()
    writer = store.GroupWriter()
    seen = []

    def dying_write():
        if not seen:  # what another session sees while the batch is open
            seen.append(other_session_running_count())
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return 1

    errors = []

    def dies():
        try:
            writer.write(dying_write)
        except Exception as exc:
            errors.append(exc)

    writer.start()
    try:
        busy, resume = threading.Event(), threading.Event()
        holding = in_thread(writer.write, lambda: (busy.set(), resume.wait(10), 1)[-1])
        busy.wait(5)
        threads = [in_thread(lambda c=c: record(c, writer=writer)) for c in (first, second)]
        wait_for_queue(writer, 2)
        threads.append(in_thread(dies))
        wait_for_queue(writer, 3)
        resume.set()
        for thread in [holding, *threads]:
            thread.join(10)
    finally:
        writer.stop()

    assert seen == [0]  # the two transitions written before it were not committed
    assert len(errors) == 1
    for claimed in (first, second):
        saga = saga_get(SagaInstance(id=claimed.lease.saga_id))
        assert saga.status == "running" and [a.outcome for a in attempts(saga)] == [None]


def other_session_running_count() -> int:
    params = connection.settings_dict
    conn = psycopg2.connect(
        dbname=params["NAME"], user=params["USER"], host=params["HOST"], port=params["PORT"]
    )
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT count(*) FROM sagas_sagainstance WHERE status = 'running'")
        return cursor.fetchone()[0]
    finally:
        conn.close()


@pytest.mark.sqlite
def test_idle_workers_sleep_until_the_earliest_due_time_or_held_lease_expiry():
    held = claimed_saga()  # claimed when due: its due time is past, its lease runs 30 s
    later = saga_create(held_definition(), next_attempt_at=timezone.now() + timedelta(seconds=10))

    assert in_seconds(store.next_due_at()) == pytest.approx(10, abs=1.5)

    SagaInstance.objects.filter(id=held.lease.saga_id).update(
        lease_expires_at=timezone.now() + timedelta(seconds=5)
    )  # its worker died: due when its lease expires
    assert in_seconds(store.next_due_at()) == pytest.approx(5, abs=1.5)

    SagaInstance.objects.filter(id=later.id).update(status="completed", next_attempt_at=None)
    assert in_seconds(store.next_due_at()) == pytest.approx(5, abs=1.5)


def held_definition():
    return definition_create([step("one", call("http://127.0.0.1:9/one"))])


def in_seconds(moment) -> float:
    return (moment - timezone.now()).total_seconds()
