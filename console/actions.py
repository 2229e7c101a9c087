"""The console's actions go through the API's services (sagas.engine.control), with the
signed-in session as the actor (its role and key_id) and the operator's reason."""

import inspect

from sagas.engine import control

CALLS = {
    "cancel": control.saga_cancel,
    "retry": control.saga_retry,
    "pause": getattr(control, "saga_pause", None),
    "resume": getattr(control, "saga_resume", None),
}


def available(action: str) -> bool:
    """Whether the engine has this action (pause and resume arrive with DESIGN §9.2)."""
    return CALLS.get(action) is not None


def saga_act(*, action: str, saga_id, actor: control.Actor, reason: str, options: dict):
    """Run `action` on the saga; raises the service's Conflict (409) or Invalid (400)."""
    call = CALLS[action]
    arguments = {"saga_id": saga_id, "actor": actor, "reason": reason or None, **options}
    return call(**_accepted(call, arguments))


def _accepted(call, arguments: dict) -> dict:
    # Until the engine records actors and reasons (DESIGN §9.2), cancel and retry take
    # only the saga id: what they do not take is left out rather than refused.
    parameters = inspect.signature(call).parameters
    return {name: value for name, value in arguments.items() if name in parameters}
