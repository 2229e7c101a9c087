"""The console's pure pieces: plain words, the timeline's geometry, a definition's diagram,
the per-minute charts, the list's cursors."""

import uuid
from datetime import UTC, datetime, timedelta

from console import listing, presenters
from sagas.models import SagaAttempt

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def attempt(step, phase="action", number=1, at=0.0, ms=10.0, outcome="succeeded"):
    return SagaAttempt(
        step=step,
        phase=phase,
        attempt=number,
        started_at=NOW + timedelta(seconds=at),
        duration_ms=ms,
        outcome=outcome,
    )


def test_the_summary_says_why_in_plain_words():
    error = {"code": "step_failed", "step": "charge", "message": "HTTP 422: card declined"}
    assert (
        presenters.saga_summary(status="paused", error=error, steps=[])
        == "paused: charge failed — HTTP 422: card declined"
    )
    timeout = {"code": "timeout", "step": "ship", "message": "deadline passed"}
    assert presenters.saga_summary(status="compensated", error=timeout, steps=[]) == (
        "compensated: timed out at ship — deadline passed"
    )
    steps = [{"name": "a", "status": "succeeded"}, {"name": "b", "status": "running"}]
    assert presenters.saga_summary(status="running", error=None, steps=steps) == (
        "running: step b (1 of 2 succeeded)"
    )
    assert presenters.saga_summary(status="completed", error=None, steps=steps) == (
        "completed: every step succeeded"
    )
    steps[1]["status"] = "waiting"
    assert presenters.saga_summary(status="running", error=None, steps=steps) == (
        "running: step b waiting for its callback (1 of 2 succeeded)"
    )


def test_the_timeline_puts_every_attempt_on_one_axis_with_lanes_and_waits():
    attempts = [
        attempt("reserve", at=0),
        attempt("charge", at=1, outcome="retryable_error"),
        attempt("charge", number=2, at=3, outcome="permanent_error"),
        attempt("reserve", phase="compensation", at=4, ms=1000),
    ]
    timeline = presenters.timeline_build(attempts, now=NOW)
    assert [bar.index for bar in timeline.bars] == [0, 1, 2, 3]
    assert [bar.lane for bar in timeline.bars] == [0, 1, 1, 2]
    assert [(lane["name"], lane["phase"]) for lane in timeline.lanes] == [
        ("reserve", "action"),
        ("charge", "action"),
        ("reserve", "compensation"),
    ]
    first, last = timeline.bars[0], timeline.bars[-1]
    assert first.x == presenters.LABEL_WIDTH
    assert last.x + last.width == presenters.WIDTH  # the axis ends at the last end
    assert len(timeline.waits) == 1  # between the two charge attempts
    assert timeline.total_ms == 5000.0
    assert timeline.ticks[-1]["label"] == "5.0 s"
    assert timeline.bars[1].label == "#1 retryable"


def test_a_call_in_flight_lasts_until_now_and_a_short_call_stays_visible():
    attempts = [attempt("a", at=-10, ms=0.1), attempt("b", at=-5, ms=None, outcome=None)]
    timeline = presenters.timeline_build(attempts, now=NOW)
    assert timeline.bars[0].width == presenters.MIN_BAR
    assert timeline.bars[1].outcome == "in_flight"
    assert timeline.bars[1].x + timeline.bars[1].width == presenters.WIDTH
    assert presenters.timeline_build([], now=NOW).bars == []


def test_a_definition_is_drawn_with_parallel_groups_and_words_for_retry_and_timeout():
    step = {
        "name": "charge",
        "action": {"method": "POST", "url": "http://p/charge", "timeout_seconds": 10},
        "compensation": None,
        "retry": {
            "max_attempts": 3,
            "delay_seconds": 5,
            "backoff_multiplier": 2.0,
            "max_delay_seconds": 60,
        },
    }
    entries = presenters.diagram_entries(
        [step, {"name": "prepare", "parallel": [{**step, "name": "a"}, {**step, "name": "b"}]}]
    )
    assert entries[0]["kind"] == "step"
    card = entries[0]["step"]
    assert card["action"] == "POST http://p/charge" and card["compensation"] is None
    assert card["retry"] == "3 attempts, wait 5 s ×2 up to 60 s"
    assert card["timeout"] == "timeout 10 s"
    assert entries[1]["kind"] == "group" and entries[1]["name"] == "prepare"
    assert [member["name"] for member in entries[1]["members"]] == ["a", "b"]
    assert presenters.retry_words({"max_attempts": 1}) == "1 attempt"


def test_minutes_of_the_last_hour_and_their_p95():
    times = [NOW - timedelta(seconds=s) for s in (10, 20, 70, 3599, 3600, 4000)]
    counts = presenters.minute_buckets(times, now=NOW)
    assert len(counts) == 60 and counts[-1] == 2 and counts[-2] == 1 and counts[0] == 1
    spans = [(NOW - timedelta(seconds=d + 5), NOW - timedelta(seconds=5)) for d in range(1, 21)]
    p95 = presenters.p95_per_minute(spans, now=NOW)
    assert p95[-1] == 19000.0 and p95[0] is None
    chart = presenters.chart_bars([None, 0, 5, 10])
    assert [bar["minute"] for bar in chart["bars"]] == [2, 1]
    assert chart["bars"][-1]["y"] == presenters.CHART_TOP and chart["peak"] == 10


def test_list_cursors_round_trip_and_garbage_is_refused():
    saga_id = uuid.uuid4()
    cursor = f"{NOW.isoformat()}_{saga_id}"
    assert listing.cursor_parse(cursor) == (NOW, saga_id)
    assert listing.cursor_parse("garbage") is None
    assert listing.cursor_parse(f"{NOW.isoformat()}_not-a-uuid") is None
    assert presenters.compact_json({"a": [1]}) == '{"a": [1]}'
