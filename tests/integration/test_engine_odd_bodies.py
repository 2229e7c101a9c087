"""Whatever participants send is stored safely (§6a): bodies PostgreSQL cannot store as
jsonb are kept as text, the step's outcome is recorded once, and the saga moves on."""

import pytest

from sagas.engine.participants import TEXT_MAX_BYTES
from tests.participants import Reply
from tests.saga_builders import attempts, call, definition_create, drive, saga_create, step

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]

# What each participant answers with its 200, and the text the step keeps.
ODD_BODIES = {
    "nan": (b'{"id": NaN}', '{"id": NaN}'),
    "nul": (b'{"note": "a\\u0000b"}', '{"note": "a\\u0000b"}'),
    "surrogate": (b'{"s": "\\ud800"}', '{"s": "\\ud800"}'),
    "deep": (b"[" * 100_000, "[" * TEXT_MAX_BYTES),
    "binary": (b"\x00\x01PNG\xff", "\ufffd\x01PNG\ufffd"),
    "latin1": (b'{"name": "Zo\xeb"}', '{"name": "Zo\ufffd"}'),
}


def test_unstorable_2xx_bodies_are_kept_as_text_and_the_saga_moves_on(participants, worker):
    for name, (raw, _) in ODD_BODIES.items():
        participants.script("POST", f"/{name}", Reply(200, raw))
    participants.script("POST", "/after", Reply(201, {"done": True}))
    steps = [step(name, call(participants.url(f"/{name}"))) for name in ODD_BODIES]
    steps.append(step("after", call(participants.url("/after"))))

    done = drive(worker, saga_create(definition_create(steps, name="odd-bodies")))

    assert done.status == "completed"
    kept = {s["name"]: s["response"] for s in done.steps}
    assert kept == {name: text for name, (_, text) in ODD_BODIES.items()} | {
        "after": {"done": True}
    }
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in done.steps)
    # Each outcome recorded once: one attempt row per step, nothing interrupted or replayed.
    rows = attempts(done)
    assert [(a.step, a.attempt, a.outcome) for a in rows] == [
        (name, 1, "succeeded") for name in [*ODD_BODIES, "after"]
    ]
    assert all(len(participants.received("POST", f"/{name}")) == 1 for name in ODD_BODIES)


def test_an_unstorable_error_body_is_stored_as_text_in_the_error(participants, worker):
    participants.script("POST", "/pay", Reply(503, b"down\x00\xff"), Reply(200, {"id": "p-1"}))
    definition = definition_create([step("pay", call(participants.url("/pay")))], name="odd")

    done = drive(worker, saga_create(definition))

    assert done.status == "completed"
    first, second = attempts(done)
    assert (first.outcome, first.error) == ("retryable_error", "HTTP 503: down\ufffd\ufffd")
    assert (second.outcome, done.steps[0]["response"]) == ("succeeded", {"id": "p-1"})
