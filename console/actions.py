"""The console's actions go through the API's services (sagas.engine.control), with the
signed-in session as the actor (its role and key_id) and the operator's reason."""

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
    return call(saga_id=saga_id, actor=actor, reason=reason or None, **options)
