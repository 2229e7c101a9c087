"""Pure shaping of what the console shows: data in, data out (no database, no settings).

The templates only place what these functions computed: the plain-words status line, the
timeline's bars on one time axis, a definition's diagram, the status page's small charts.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sagas.selectors import nearest_rank_p95

# --- A saga in plain words ---------------------------------------------------------------

STATUS_WORDS = {
    "pending": "waiting for a worker to start it",
    "running": "running",
    "paused": "waiting for an operator to resume or cancel it",
    "compensating": "undoing the steps that succeeded",
    "completed": "every step succeeded",
    "compensated": "its steps were undone",
    "cancelled": "cancelled",
    "failed": "a compensation could not succeed: it needs an operator (retry)",
}
ERROR_WORDS = {
    "step_failed": "{step} failed",
    "timeout": "timed out",
    "cancelled": "cancel requested",
    "compensation_failed": "the compensation of {step} failed",
}


def saga_summary(*, status: str, error: dict | None, steps: list[dict]) -> str:
    """One line an operator reads first: "compensated: charge_payment failed — HTTP 422:
    card declined"."""
    if error:
        words = ERROR_WORDS.get(error.get("code"), "{step} failed")
        cause = words.format(step=error.get("step") or "a step")
        if error.get("step") and "{step}" not in words:
            cause += f" at {error['step']}"
        return f"{status}: {cause} — {error.get('message') or 'no message'}"
    if status == "running":
        current = next((s for s in steps if s.get("status") in ("running", "waiting")), None)
        done = sum(s.get("status") == "succeeded" for s in steps)
        where = f"step {current['name']}" if current else "between steps"
        if current and current["status"] == "waiting":  # an asynchronous step (§9.4)
            where += " waiting for its callback"
        return f"running: {where} ({done} of {len(steps)} succeeded)"
    return f"{status}: {STATUS_WORDS.get(status, status)}"


def pretty_json(value) -> str:
    """JSON as an operator reads it (indented, non-ASCII kept); text stays text."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def compact_json(value) -> str:
    """One line of JSON (history details): what the API shows, not Python's repr."""
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def alert_words(alert: dict) -> dict:
    """An alert of saga_stats() with its value and threshold as an operator reads them:
    rates and ratios in %, durations in ms or s."""
    timed = "duration" in alert["name"] or "response_time" in alert["name"]
    shown = duration_words if timed else _percent  # else a rate or a ratio
    return {
        **alert,
        "value_text": shown(alert["value"]),
        "threshold_text": shown(alert["threshold"]),
    }


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.1f} %"


# --- The timeline ------------------------------------------------------------------------

WIDTH = 1000  # viewBox units of the time axis
LABEL_WIDTH = 220  # the lane names, left of the axis
LANE_HEIGHT = 28
BAR_HEIGHT = 18
MIN_BAR = 3  # a 1 ms call still shows
TICKS = 5


@dataclass
class Bar:
    index: int  # the attempt's position in /logs/ (its anchor: #attempt-<index>)
    lane: int
    x: float
    y: float
    width: float
    outcome: str  # succeeded, retryable_error, permanent_error, interrupted, in_flight
    label: str  # the attempt number and outcome in words (title and visible text)
    text_x: float
    text_y: float
    show_text: bool


@dataclass
class Wait:
    x1: float
    x2: float
    y: float


@dataclass
class Timeline:
    lanes: list[dict] = field(default_factory=list)  # {"name", "phase", "y", "text_y"}
    bars: list[Bar] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    ticks: list[dict] = field(default_factory=list)  # {"x", "label"}
    height: int = 0
    total_ms: float = 0.0
    axis_y: int = 0


OUTCOME_WORDS = {
    "succeeded": "ok",
    "retryable_error": "retryable",
    "permanent_error": "rejected",
    "interrupted": "interrupted",
    "in_flight": "in flight",
}


def timeline_build(attempts: list, *, now: datetime) -> Timeline:
    """Every attempt as a bar on one time axis, one lane per step and phase (in the order
    the lanes first appear); the gap between a lane's attempts is drawn as a wait."""
    timeline = Timeline()
    if not attempts:
        return timeline
    spans = [_span(attempt, now) for attempt in attempts]
    start = min(begin for begin, _ in spans)
    end = max(finish for _, finish in spans)
    total = max((end - start).total_seconds(), 0.001)
    scale = (WIDTH - LABEL_WIDTH) / total
    lanes: dict[tuple[str, str], int] = {}
    last_end: dict[int, float] = {}
    for index, (attempt, (begin, finish)) in enumerate(zip(attempts, spans, strict=True)):
        lane = lanes.setdefault((attempt.step, attempt.phase), len(lanes))
        x = LABEL_WIDTH + (begin - start).total_seconds() * scale
        width = max(MIN_BAR, (finish - begin).total_seconds() * scale)
        y = lane * LANE_HEIGHT + (LANE_HEIGHT - BAR_HEIGHT) / 2
        if lane in last_end and x > last_end[lane] + 1:
            timeline.waits.append(Wait(last_end[lane], x, y + BAR_HEIGHT / 2))
        last_end[lane] = x + width
        outcome = attempt.outcome or "in_flight"
        label = f"#{attempt.attempt} {OUTCOME_WORDS.get(outcome, outcome)}"
        timeline.bars.append(
            Bar(
                index=index,
                lane=lane,
                x=round(x, 1),
                y=y,
                width=round(width, 1),
                outcome=outcome,
                label=label,
                text_x=round(x + 4, 1),
                text_y=y + 13,
                show_text=width >= 7 * len(label),  # ~7 units per character at 11 px
            )
        )
    timeline.lanes = [
        {"name": name, "phase": phase, "y": i * LANE_HEIGHT, "text_y": i * LANE_HEIGHT + 18}
        for (name, phase), i in lanes.items()
    ]
    timeline.axis_y = len(lanes) * LANE_HEIGHT + 4
    timeline.height = timeline.axis_y + 22
    timeline.total_ms = round(total * 1000, 1)
    timeline.ticks = _ticks(total, scale, timeline.axis_y)
    return timeline


def _span(attempt, now: datetime) -> tuple[datetime, datetime]:
    begin = attempt.started_at
    if attempt.duration_ms is None:  # in flight: it runs until now
        return begin, max(begin, now)
    return begin, begin + timedelta(milliseconds=attempt.duration_ms)


def _ticks(total: float, scale: float, axis_y: int) -> list[dict]:
    return [
        {
            "x": round(LABEL_WIDTH + total * i / TICKS * scale, 1),
            "y": axis_y + 16,
            "label": duration_words(total * i / TICKS * 1000),
            "anchor": "end" if i == TICKS else ("start" if i == 0 else "middle"),
        }
        for i in range(TICKS + 1)
    ]


def duration_words(ms: float | None) -> str:
    if ms is None:
        return "—"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


# --- A definition as a diagram -------------------------------------------------------------


def diagram_entries(steps: list[dict]) -> list[dict]:
    """The steps top to bottom: {"kind": "step", "step": …} or, for an entry with
    "parallel", {"kind": "group", "name", "members": [step…]} drawn side by side."""
    entries = []
    for entry in steps:
        if isinstance(entry.get("parallel"), list):
            members = [step_card(member) for member in entry["parallel"]]
            entries.append({"kind": "group", "name": entry.get("name", ""), "members": members})
        else:
            entries.append({"kind": "step", "step": step_card(entry)})
    return entries


def step_card(step: dict) -> dict:
    return {
        "name": step.get("name", ""),
        "action": call_words(step.get("action")),
        "compensation": call_words(step.get("compensation")),
        "retry": retry_words(step.get("retry")),
        "timeout": timeout_words(step.get("action")),
        "on_failure": step.get("on_failure"),
    }


def call_words(call: dict | None) -> str | None:
    if not call:
        return None
    return f"{call.get('method', '?')} {call.get('url', '')}"


def retry_words(retry: dict | None) -> str:
    if not retry:
        return "default retry"
    attempts = retry.get("max_attempts")
    delay = retry.get("delay_seconds")
    words = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if attempts and attempts > 1 and delay is not None:
        words += f", wait {_seconds(delay)}"
        multiplier = retry.get("backoff_multiplier")
        if multiplier and multiplier != 1:
            words += f" ×{multiplier:g}"
        if retry.get("max_delay_seconds") is not None:
            words += f" up to {_seconds(retry['max_delay_seconds'])}"
    return words


def timeout_words(call: dict | None) -> str:
    if not call or call.get("timeout_seconds") is None:
        return "default timeout"
    return f"timeout {_seconds(call['timeout_seconds'])}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


# --- Small charts of the last hour -----------------------------------------------------------

CHART_WIDTH = 600
CHART_HEIGHT = 120
CHART_TOP = 10


def minute_buckets(times: list[datetime], *, now: datetime, minutes: int = 60) -> list[int]:
    """How many of `times` fall in each of the last `minutes` minutes (oldest first)."""
    counts = [0] * minutes
    for moment in times:
        age = int((now - moment).total_seconds() // 60)
        if 0 <= age < minutes:
            counts[minutes - 1 - age] += 1
    return counts


def p95_per_minute(
    spans: list[tuple[datetime, datetime]], *, now: datetime, minutes: int = 60
) -> list[float | None]:
    """Nearest-rank p95 of created→finished (ms) of the sagas finished in each minute."""
    buckets: list[list[float]] = [[] for _ in range(minutes)]
    for created, finished in spans:
        age = int((now - finished).total_seconds() // 60)
        if 0 <= age < minutes:
            buckets[minutes - 1 - age].append((finished - created).total_seconds() * 1000)
    return [_rounded(nearest_rank_p95(durations)) for durations in buckets]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def chart_bars(values: list[float | None]) -> dict:
    """Columns of a bar chart in a CHART_WIDTH × CHART_HEIGHT box, scaled to the largest
    value (None draws nothing); with the peak for the axis label."""
    peak = max((v for v in values if v is not None), default=0) or 1
    slot = CHART_WIDTH / max(1, len(values))
    bars = []
    for i, value in enumerate(values):
        if not value:
            continue
        height = max(1.0, value / peak * (CHART_HEIGHT - CHART_TOP))
        bars.append(
            {
                "x": round(i * slot + 1, 1),
                "y": round(CHART_HEIGHT - height, 1),
                "width": round(max(1.0, slot - 2), 1),
                "height": round(height, 1),
                "value": value,
                "minute": len(values) - i,
            }
        )
    return {"bars": bars, "peak": peak, "width": CHART_WIDTH, "height": CHART_HEIGHT}
