"""Where idle worker threads sleep: notifications, due times, the poll."""

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from sagas.engine.idle import LOOK_SHARED_SECONDS, IdleWait
from sagas.engine.wakeup import Wakeups

# Also the embedded default's only mechanism (no NOTIFY on SQLite).
pytestmark = pytest.mark.sqlite


def sleepers(wakeups: Wakeups, count: int) -> tuple[list[threading.Thread], list]:
    woken = []

    def sleep():
        woken.append((wakeups.wait(), time.monotonic()))

    threads = [threading.Thread(target=sleep, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)  # all asleep
    return threads, woken


def test_one_due_time_wakes_one_sleeper_and_the_others_sleep_on():
    wakeups = Wakeups(poll_seconds=5, capacity=3)
    threads, woken = sleepers(wakeups, 3)
    wakeups.due(timezone.now() + timedelta(seconds=0.1))
    time.sleep(0.4)
    assert [claim for claim, _ in woken] == [True]  # one took the due time
    wakeups.notify_all()
    for thread in threads:
        thread.join(timeout=2)
    assert [claim for claim, _ in woken] == [True, True, True]


def test_an_earlier_due_time_told_during_a_sleep_shortens_it():
    wakeups = Wakeups(poll_seconds=5, capacity=1)
    started = time.monotonic()
    threads, woken = sleepers(wakeups, 1)
    wakeups.due(timezone.now() + timedelta(seconds=0.2))
    threads[0].join(timeout=2)
    ((claim, at),) = woken
    assert claim is True and 0.2 <= at - started < 1.0


def test_a_notification_wakes_one_sleeper_with_true_and_the_poll_ends_a_sleep():
    wakeups = Wakeups(poll_seconds=0.3, capacity=2)
    started = time.monotonic()
    threads, woken = sleepers(wakeups, 2)
    wakeups.notify()
    time.sleep(0.1)
    assert [claim for claim, _ in woken] == [True]
    threads[1].join(timeout=2)
    threads[0].join(timeout=2)
    assert woken[1][0] is False and woken[1][1] - started >= 0.3  # the poll: look again


def test_notifications_are_capped_at_the_number_of_threads():
    wakeups = Wakeups(poll_seconds=0.05, capacity=2)
    wakeups.notify(10)
    assert [wakeups.wait() for _ in range(3)] == [True, True, False]


def test_the_threads_of_a_process_share_one_look_at_the_next_due_time():
    looks = []
    wakeups = Wakeups(poll_seconds=5, capacity=3)
    idle = IdleWait(wakeups, lambda: looks.append(1))
    wakeups.notify(2)
    idle.wait(threading.Event())
    idle.wait(threading.Event())  # another thread, just after: the look already told
    assert len(looks) == 1
    time.sleep(LOOK_SHARED_SECONDS)
    wakeups.notify()
    idle.wait(threading.Event())
    assert len(looks) == 2


def test_an_idle_thread_sleeps_until_the_due_time_its_look_found():
    soon = timezone.now() + timedelta(seconds=0.2)
    idle = IdleWait(Wakeups(poll_seconds=5, capacity=1), lambda: soon)
    started = time.monotonic()
    idle.wait(threading.Event())
    assert 0.15 <= time.monotonic() - started < 1.0


def test_an_idle_thread_looks_again_at_each_poll_and_leaves_when_stopped():
    looks = []
    wakeups = Wakeups(poll_seconds=0.1, capacity=1)
    idle, stopping = IdleWait(wakeups, lambda: looks.append(1)), threading.Event()
    thread = threading.Thread(target=idle.wait, args=(stopping,), daemon=True)
    thread.start()
    time.sleep(0.45)
    assert thread.is_alive() and 3 <= len(looks) <= 5  # a look per poll, no claim
    stopping.set()
    wakeups.notify_all()  # what Worker.stop() does
    thread.join(timeout=1)
    assert not thread.is_alive()
