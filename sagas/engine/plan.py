"""A definition's steps as the engine runs them: calls and retry policies, defaults applied.

Pure: the defaults come in as arguments (the executor passes the settings).
"""

from dataclasses import dataclass

from sagas.engine.retry import RetryPolicy
from sagas.engine.webhooks import Notify

DEFAULT_BACKOFF = 2.0
DEFAULT_MAX_DELAY = 60.0


@dataclass(frozen=True)
class StepPlan:
    name: str
    action: dict
    compensation: dict | None
    policy: RetryPolicy
    # "compensate" | "pause": what its final failure does (the normalised definition
    # writes the effective value on every step; older versions have none).
    on_failure: str = "compensate"
    # Seconds to wait for the callback after a 202 of an asynchronous action (its
    # `"async": {"timeout_seconds": N}`, DESIGN §9.4); None: an ordinary action.
    async_timeout: float | None = None
    # The parallel group it is a member of (DESIGN §9.3); None: an ordinary step.
    group: str | None = None


@dataclass(frozen=True)
class SagaPlan:
    definition: str
    steps: tuple[StepPlan, ...]
    compensation_attempts: int
    call_timeout: float
    version: int | None = None
    # The definition's lifecycle webhooks (DESIGN §9.5); None: none.
    notify: Notify | None = None


def plan_build(
    *,
    definition: str,
    steps: list[dict],
    retry_attempts: int,
    retry_delay: float,
    compensation_attempts: int,
    call_timeout: float,
    version: int | None = None,
    notify: dict | None = None,
) -> SagaPlan:
    return SagaPlan(
        definition=definition,
        steps=tuple(_step(step, retry_attempts, retry_delay) for step in steps_flat(steps)),
        compensation_attempts=compensation_attempts,
        call_timeout=call_timeout,
        version=version,
        notify=Notify.of(notify),
    )


def _step(step: dict, retry_attempts: int, retry_delay: float) -> StepPlan:
    retry = step.get("retry") or {}
    policy = RetryPolicy(
        max_attempts=int(retry.get("max_attempts", retry_attempts)),
        delay_seconds=float(retry.get("delay_seconds", retry_delay)),
        backoff_multiplier=float(retry.get("backoff_multiplier", DEFAULT_BACKOFF)),
        max_delay_seconds=float(retry.get("max_delay_seconds", DEFAULT_MAX_DELAY)),
    )
    return StepPlan(
        name=step["name"],
        action=step["action"],
        compensation=step.get("compensation") or None,
        policy=policy,
        on_failure=step.get("on_failure") or "compensate",
        async_timeout=_async_timeout(step["action"]),
        group=step.get("group"),
    )


def _async_timeout(action: dict) -> float | None:
    options = action.get("async")
    return None if not options else float(options["timeout_seconds"])


def steps_flat(steps: list[dict]) -> list[dict]:
    """The engine's step list: a parallel group's members in its place, in definition
    order, each with `"group": "<name>"` (a definition without groups: unchanged)."""
    if not any("parallel" in step for step in steps):
        return steps
    flat = []
    for step in steps:
        members = step.get("parallel")
        if members is None:
            flat.append(step)
        else:
            flat.extend(dict(member, group=step["name"]) for member in members)
    return flat


def steps_initial(plan_steps: list[dict]) -> list[dict]:
    """The `SagaInstance.steps` of a new saga (the shared state model); `plan_steps` are
    flat (steps_flat): a member keeps its `group`."""
    return [
        {
            "name": step["name"],
            "status": "pending",
            "attempts": 0,
            "compensation_attempts": 0,
            "response": None,
            "status_code": None,
            "error": None,
        }
        | ({"group": step["group"]} if step.get("group") else {})
        for step in plan_steps
    ]
