"""The console's actions go through the API's services (sagas.engine.control), with the
signed-in session as the actor (its role and key_id) and the operator's reason."""

from sagas.engine import control

CALLS = {
    "cancel": control.saga_cancel,
    "retry": control.saga_retry,
    "pause": control.saga_pause,
    "resume": control.saga_resume,
}


def saga_act(*, action: str, saga_id, actor: control.Actor, reason: str, options: dict):
    """Run `action` on the saga; raises the service's Conflict (409) or Invalid (400)."""
    return CALLS[action](saga_id=saga_id, actor=actor, reason=reason, **options)
