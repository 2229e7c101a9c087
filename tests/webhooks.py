"""Helpers of the webhook tests: the README's receiver snippet, run as written, a receiver
server, and definitions with `notify`."""

import re
from pathlib import Path

from sagas.engine.webhooks import EVENT_TYPES
from tests.participants import ParticipantServer, Received
from tests.saga_builders import call, definition_create, step

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-webhook-secret-0123456789"
HOOK = "/hook"


def readme_verify_source() -> str:
    """README.md's webhook section's Python block that defines `verify`, as printed."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    return next(block for block in blocks if "def verify(" in block)


def readme_verify():
    """The `verify` function of README.md's webhook section, executed as it is printed."""
    source = readme_verify_source()
    assert len(source.strip().splitlines()) <= 10, "the README snippet is meant to be short"
    namespace: dict = {}
    exec(compile(source, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    return namespace["verify"]


def notified_definition(participants: ParticipantServer, hook_url: str, events=EVENT_TYPES):
    """reserve → charge (both succeed unless scripted otherwise), its events to `hook_url`."""
    url = participants.url
    definition = definition_create(
        [
            step("reserve", call(url("/reserve")), call(url("/release"))),
            step("charge", call(url("/charge")), call(url("/refund"))),
        ],
        name="notified",
    )
    definition.notify = {"url": hook_url, "events": list(events)}
    definition.save(update_fields=["notify"])
    return definition


def hooks(receiver: ParticipantServer) -> list[Received]:
    return receiver.received("POST", HOOK)


def types_of(received: list[Received]) -> list[str]:
    return [r.body["type"] for r in received]
