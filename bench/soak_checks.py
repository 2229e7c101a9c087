"""The soak's invariants: pure functions of what the participants recorded and what the API
answered. No network, no clock: unit-testable with hand-made records.

A step's action *took or may have taken effect* (it must be compensated when its saga
compensates) when any call of it was answered 2xx or 5xx, or was cut: held past the
caller's timeout, the connection closed before the answer, or read only after the caller
had given up (`stale`). The orchestrator's own log adds what the participant cannot see:
an attempt it logged as a 5xx or a timeout (e.g. a 4xx written just after the caller's
timeout fired) is uncertain too. A step may *also* be compensated, without being required
to, when the log shows an attempt whose outcome nobody knows (interrupted, no status). Any
other step — never called, or only rejected with a 4xx the caller read — must not be.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

TERMINAL = ("completed", "compensated", "cancelled", "failed")
ERROR_CODE = {"compensated": ("step_failed", "timeout"), "cancelled": ("cancelled",)}
ERROR_CODE["failed"] = ("compensation_failed",)
BOUND_SLACK = 5.0  # seconds a participant may take to notice its caller hung up
# After an accepted cancel, compensation (or the end) comes within the call in flight's
# timeout, a lease takeover (a worker killed meanwhile) and this much scheduling slack.
CANCEL_SLACK = 20.0
MAX_INTERRUPTIONS = 3  # SAGA_MAX_INTERRUPTIONS' default (§6a)


@dataclass
class SagaFacts:
    """One saga as the soak saw it; `calls` are this saga's participant calls by seq."""

    id: str
    detail: dict | None  # GET /api/sagas/{id}/ (None: 404)
    logs: list[dict]
    steps: list[tuple[str, bool]]  # the definition's steps: (name, has a compensation)
    cancel: str | None = None  # accepted (202) | refused (409) | unknown | None: not sent
    cancel_at: float | None = None  # time.time() when the 202 was received
    calls: list = field(default_factory=list)

    @property
    def status(self) -> str | None:
        return self.detail["status"] if self.detail else None

    @property
    def finished_at(self) -> float | None:
        value = self.detail and self.detail.get("finished_at")
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None

    def step_calls(self, step: str, phase: str) -> list:
        return [c for c in self.calls if c.step == step and c.phase == phase]

    def step_rows(self, step: str, phase: str) -> list[dict]:
        return [r for r in self.logs if r["step"] == step and r["phase"] == phase]


def _describe(call) -> str:
    answer = f"{call.status}" if call.status else call.end
    return f"#{call.seq} {call.step}/{call.phase} {call.kind}->{answer}"


def _row_uncertain(row: dict) -> bool:
    """The orchestrator logged a 5xx or a timeout: it cannot know the call did nothing."""
    status = row.get("status_code")
    return (status is not None and status >= 500) or "timed out" in (row.get("error") or "")


def _row_unknown(row: dict) -> bool:
    """No status: interrupted, in flight, or lost on the way — may or may not have run."""
    return row.get("status_code") is None


def step_must_undo(saga: SagaFacts, step: str) -> bool:
    calls = saga.step_calls(step, "action")
    if any(not call.certain_rejection for call in calls):
        return True
    return any(_row_uncertain(row) for row in saga.step_rows(step, "action"))


def step_may_undo(saga: SagaFacts, step: str) -> bool:
    rows = saga.step_rows(step, "action")
    return step_must_undo(saga, step) or any(_row_unknown(row) for row in rows)


# --- the invariants: each returns a list of violations (one line each, with the saga id) ---


def check_nothing_lost(sagas: list[SagaFacts]) -> list[str]:
    return [f"{s.id}: answered 202/200 at start, GET says 404" for s in sagas if not s.detail]


def check_all_terminal(sagas: list[SagaFacts]) -> list[str]:
    return [
        f"{s.id}: still {s.status} at the end; {_where_it_stands(s)}"
        for s in sagas
        if s.detail and s.status not in TERMINAL
    ]


def _where_it_stands(saga: SagaFacts) -> str:
    """Enough to tell a slow saga from a stuck one once the soak's database is gone."""
    steps = ", ".join(
        f"{step['name']} {step['status']} {step['attempts']}+{step['compensation_attempts']}"
        for step in saga.detail.get("steps") or []
    )
    last = saga.logs[-1] if saga.logs else None
    call = (
        "no call"
        if last is None
        else (
            f"last call {last['step']} {last['phase']} #{last['attempt']} {last['outcome']}"
            f" at {last['started_at']}"
        )
    )
    return f"steps: {steps}; {call}; cancel {saga.cancel}"


def check_same_key_same_saga(starts: dict[str, list[str]]) -> list[str]:
    """`starts`: Idempotency-Key -> the saga ids every answered start with it returned."""
    return [
        f"key {key}: starts answered with different sagas {sorted(set(ids))}"
        for key, ids in starts.items()
        if len(set(ids)) > 1
    ]


def check_compensation_order(saga: SagaFacts) -> list[str]:
    """Compensations walk the steps backwards, one at a time: the walk leaves a step only
    after its compensation was answered 2xx, and never comes back to a later step."""
    index = {name: i for i, (name, _) in enumerate(saga.steps)}
    comps = [c for c in saga.calls if c.phase == "compensation"]
    problems = []
    for before, after in zip(comps, comps[1:], strict=False):
        if index.get(after.step, -1) > index.get(before.step, -1):
            problems.append(f"{saga.id}: {_describe(after)} after {_describe(before)}")
        elif after.step != before.step and not before.answered_2xx:
            problems.append(
                f"{saga.id}: {_describe(after)} started before {before.step}'s compensation "
                f"succeeded (last: {_describe(before)})"
            )
    return problems


def check_compensation_exactly(saga: SagaFacts) -> list[str]:
    problems = []
    for step, compensable in saga.steps:
        if not compensable:
            continue
        comps = saga.step_calls(step, "compensation")
        if comps and not step_may_undo(saga, step):
            actions = ", ".join(_describe(c) for c in saga.step_calls(step, "action")) or "none"
            problems.append(f"{saga.id}: {step} compensated but never took effect ({actions})")
        done = any(c.answered_2xx for c in comps)
        if saga.status in ("compensated", "cancelled") and step_must_undo(saga, step) and not done:
            calls = ", ".join(_describe(c) for c in saga.step_calls(step, "action"))
            problems.append(
                f"{saga.id}: {saga.status}, but {step} may have taken effect and was not "
                f"compensated (actions: {calls}; compensations: {len(comps)})"
            )
    return problems


def check_no_action_after_compensation(saga: SagaFacts) -> list[str]:
    first = next((c for c in saga.calls if c.phase == "compensation"), None)
    if first is None:
        return []
    late = [c for c in saga.calls if c.phase == "action" and c.seq > first.seq and not c.stale]
    return [f"{saga.id}: {_describe(c)} after compensation {_describe(first)}" for c in late]


def check_one_call_per_key(calls: list) -> list[str]:
    return [
        f"{c.saga_id}: {_describe(c)} arrived while #{c.overlapped} with key {c.key} were open"
        for c in calls
        if c.overlapped
    ]


def check_calls_within_attempts(saga: SagaFacts) -> list[str]:
    """Participant calls ≤ attempts the instance shows + interrupted rows in /logs/."""
    if not saga.detail:
        return []
    problems = []
    for step in saga.detail.get("steps", []):
        for phase, field_name in (
            ("action", "attempts"),
            ("compensation", "compensation_attempts"),
        ):
            calls = len(saga.step_calls(step["name"], phase))
            rows = saga.step_rows(step["name"], phase)
            interrupted = sum(1 for row in rows if row.get("outcome") == "interrupted")
            allowed = (step.get(field_name) or 0) + interrupted
            if calls > allowed:
                problems.append(
                    f"{saga.id}: {step['name']}/{phase}: {calls} calls received, "
                    f"{step.get(field_name)} attempts + {interrupted} interrupted recorded"
                )
    return problems


def check_no_call_after_finish(saga: SagaFacts) -> list[str]:
    finished = saga.finished_at
    if finished is None or saga.status not in TERMINAL:
        return []
    late = [c for c in saga.calls if c.started > finished and not c.stale]
    return [
        f"{saga.id}: {_describe(c)} received {c.started - finished:.3f} s after finished_at"
        for c in late
    ]


def check_status_consistent(saga: SagaFacts) -> list[str]:
    status, problems = saga.status, []
    if status not in TERMINAL:
        return []
    if saga.cancel == "accepted" and status not in ("cancelled", "failed"):
        problems.append(f"{saga.id}: cancel answered 202, saga ended {status}")
    if status == "cancelled" and saga.cancel in (None, "refused"):
        problems.append(f"{saga.id}: cancelled without an accepted cancel ({saga.cancel})")
    if status == "completed":
        problems += _completed_problems(saga)
    code = ((saga.detail or {}).get("error") or {}).get("code")
    if status in ERROR_CODE and code not in ERROR_CODE[status]:
        problems.append(f"{saga.id}: {status} with error.code {code!r}")
    return problems


def _completed_problems(saga: SagaFacts) -> list[str]:
    problems = []
    for step, _ in saga.steps:
        if not any(c.answered_2xx for c in saga.step_calls(step, "action")):
            problems.append(f"{saga.id}: completed, but {step} was never answered 2xx")
    comps = [c for c in saga.calls if c.phase == "compensation"]
    if comps:
        problems.append(f"{saga.id}: completed, yet {len(comps)} compensation calls were made")
    return problems


def _interrupted(row: dict) -> bool:
    """An interrupted call: `outcome: "interrupted"` (§6a), or the older engine's
    retryable error whose message says the worker was lost."""
    error = row.get("error") or ""
    return row.get("outcome") == "interrupted" or error.startswith("interrupted")


def check_crash_not_an_attempt(saga: SagaFacts) -> list[str]:
    """An interrupted call is sent again with the same attempt number (§5.2, §6a) —
    unless its step ran out of interruptions or a cancel was sent (which may end it)."""
    if saga.cancel is not None or saga.status not in TERMINAL:
        return []
    problems = []
    for step, _ in saga.steps:
        for phase in ("action", "compensation"):
            rows = saga.step_rows(step, phase)
            if sum(1 for row in rows if _interrupted(row)) > MAX_INTERRUPTIONS:
                continue
            for position, row in enumerate(rows):
                later = rows[position + 1 :]
                resent = any(r["attempt"] == row["attempt"] for r in later)
                if _interrupted(row) and not resent:
                    problems.append(
                        f"{saga.id}: {step}/{phase} attempt {row['attempt']} interrupted and "
                        f"never sent again (next: {[(r['attempt'], r['outcome']) for r in later]})"
                    )
    return problems


def check_cancel_acts_promptly(saga: SagaFacts, timeout: float, lease: float) -> list[str]:
    """After a cancel's 202, compensation starts (or the saga ends) without waiting out
    a retry delay: within the in-flight call's timeout, a lease and CANCEL_SLACK."""
    if saga.cancel != "accepted" or saga.cancel_at is None or saga.status not in TERMINAL:
        return []
    comps = [c.started for c in saga.calls if c.phase == "compensation"]
    acted = min(comps) if comps else saga.finished_at
    bound = saga.cancel_at + timeout + lease + CANCEL_SLACK
    if acted is None or acted <= bound:
        return []
    return [
        f"{saga.id}: cancel accepted, first compensation/end {acted - saga.cancel_at:.1f} s "
        f"later (bound {bound - saga.cancel_at:.1f} s)"
    ]


def check_calls_bounded(calls: list, timeout: float, now: float) -> list[str]:
    """Every call ends (answered, or the caller hangs up) within its timeout + slack."""
    problems = []
    for c in calls:
        lasted = (c.ended if c.ended is not None else now) - c.started
        if lasted > timeout + BOUND_SLACK:
            state = "still open" if c.ended is None else c.end
            problems.append(f"{c.saga_id}: {_describe(c)} lasted {lasted:.1f} s ({state})")
    return problems


def per_saga(check):
    def run(sagas: list[SagaFacts]) -> list[str]:
        return [problem for saga in sagas for problem in check(saga)]

    return run


def run_all(
    sagas: list[SagaFacts], starts: dict, calls: list, *, timeout: float, lease: float, now: float
) -> dict[str, list[str]]:
    """Invariant name -> its violations (empty: it holds)."""
    return {
        "nothing lost": check_nothing_lost(sagas),
        "every saga terminal": check_all_terminal(sagas),
        "same start key, same saga": check_same_key_same_saga(starts),
        "compensations in strict reverse order": per_saga(check_compensation_order)(sagas),
        "compensated exactly what may have taken effect": per_saga(check_compensation_exactly)(
            sagas
        ),
        "no action after the first compensation": per_saga(check_no_action_after_compensation)(
            sagas
        ),
        "never two open calls with one key": check_one_call_per_key(calls),
        "calls <= attempts + interruptions": per_saga(check_calls_within_attempts)(sagas),
        "no call after finished_at": per_saga(check_no_call_after_finish)(sagas),
        "final status consistent with the calls": per_saga(check_status_consistent)(sagas),
        "every call bounded by its timeout": check_calls_bounded(calls, timeout, now),
        "a crash is not an attempt": per_saga(check_crash_not_an_attempt)(sagas),
        "cancel acts at once": [
            problem
            for saga in sagas
            for problem in check_cancel_acts_promptly(saga, timeout, lease)
        ],
    }


def attach_calls(sagas: list[SagaFacts], calls: list) -> list:
    """Give each saga its calls (by seq); return the calls that name no known saga."""
    by_id = {saga.id: saga for saga in sagas}
    grouped, strays = defaultdict(list), []
    for call in sorted(calls, key=lambda c: c.seq):
        (grouped[call.saga_id] if call.saga_id in by_id else strays).append(call)
    for saga_id, saga_calls in grouped.items():
        by_id[saga_id].calls = saga_calls
    return strays
