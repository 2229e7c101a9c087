"""The console's actions take the API's path: the body is validated by the API's own
serializer (ReasonSerializer, ResumeSerializer), then one call of sagas.engine.control
with the signed-in session as the actor (its role and key_id)."""

from sagas.api.serializers import ReasonSerializer, ResumeSerializer
from sagas.engine import control

CALLS = {
    "cancel": control.saga_cancel,
    "retry": control.saga_retry,
    "pause": control.saga_pause,
    "resume": control.saga_resume,
}
BODIES = {
    "cancel": ReasonSerializer,
    "retry": ReasonSerializer,
    "pause": ReasonSerializer,
    "resume": ResumeSerializer,
}


def body_validate(*, action: str, body: dict) -> tuple[dict | None, list[tuple[str, str]]]:
    """The call's arguments from the API body, or the API's messages as (field, text)."""
    serializer = BODIES[action](data=body)
    if serializer.is_valid():
        return dict(serializer.validated_data), []
    return None, list(_messages(serializer.errors))


def _messages(errors, prefix: str = ""):
    for name, value in errors.items():
        field = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from _messages(value, prefix=f"{field}.")
        else:
            for message in value:
                yield field, str(message)


def saga_act(*, action: str, saga_id, actor: control.Actor, arguments: dict):
    """Run `action` on the saga; raises the service's Conflict (409) or Invalid (400)."""
    return CALLS[action](saga_id=saga_id, actor=actor, **arguments)
