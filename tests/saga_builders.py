"""Builders for engine tests: definitions and sagas straight through the ORM, and
helpers to drive a worker a tick at a time."""

import threading
import time
from datetime import timedelta

from django.db import connections
from django.utils import timezone

from sagas.engine import control
from sagas.engine.plan import steps_flat, steps_initial
from sagas.models import TERMINAL_STATUSES, SagaAttempt, SagaDefinition, SagaInstance
from tests.participants import Reply
from tests.support import wait_until

FAST_RETRY = {
    "max_attempts": 3,
    "delay_seconds": 0,
    "backoff_multiplier": 1,
    "max_delay_seconds": 0,
}

# An internal-role operator, as the API names the one acting on a saga.
OPERATOR = control.Actor("internal", "0a1b2c3d")


def call(url: str, *, method: str = "POST", body=None, headers=None, timeout=None) -> dict:
    spec = {"method": method, "url": url, "headers": headers or {}, "body": body}
    if timeout is not None:
        spec["timeout_seconds"] = timeout
    return spec


def step(name: str, action: dict, compensation: dict | None = None, retry: dict | None = None):
    return {
        "name": name,
        "action": action,
        "compensation": compensation,
        "retry": {**FAST_RETRY, **(retry or {})},
    }


def definition_create(steps: list[dict], *, name: str = "checkout", timeout_seconds=60.0):
    latest = SagaDefinition.objects.filter(name=name).order_by("-version").first()
    return SagaDefinition.objects.create(
        name=name,
        version=(latest.version + 1) if latest else 1,
        timeout_seconds=timeout_seconds,
        steps=steps,
        content_hash="0" * 64,
    )


def saga_create(definition: SagaDefinition, saga_input: dict | None = None, **fields):
    now = timezone.now()
    values = {
        "definition": definition,
        "definition_name": definition.name,
        "definition_version": definition.version,
        "input": saga_input or {},
        "steps": steps_initial(steps_flat(definition.steps)),
        "next_attempt_at": now,
        "deadline_at": now + timedelta(seconds=definition.timeout_seconds),
    }
    values.update(fields)
    return SagaInstance.objects.create(**values)


def saga_get(saga) -> SagaInstance:
    return SagaInstance.objects.get(id=saga.id)


def attempts(saga) -> list[SagaAttempt]:
    return list(SagaAttempt.objects.filter(saga_id=saga.id).order_by("id"))


def drive(worker, saga, *, timeout: float = 10.0) -> SagaInstance:
    """Tick `worker` until `saga` is terminal (retries wait in the database in between)."""

    def finished():
        if not worker.tick():
            time.sleep(0.005)
        current = saga_get(saga)
        return current if current.status in TERMINAL_STATUSES else None

    return wait_until(finished, timeout=timeout, interval=0)


def in_thread(target, *args) -> threading.Thread:
    """Start `target(*args)` in a thread that closes its database connection at the end."""

    def run():
        try:
            target(*args)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def checkout_definition(participants, *, retry=None, name: str = "checkout"):
    """reserve → charge → ship on the scripted server, each with a compensation
    (DELETE /reserve/<id>, POST /refund with the payment id, POST /unship)."""
    url = participants.url
    participants.script("POST", "/reserve", Reply(201, {"id": "r-9"}))
    participants.script("POST", "/charge", Reply(201, {"id": "p-1"}))
    return definition_create(
        [
            step(
                "reserve",
                call(url("/reserve"), body={"order": "${input.order_id}"}),
                call(url("/reserve/${steps.reserve.response.id}"), method="DELETE"),
            ),
            step(
                "charge",
                call(url("/charge"), body={"reservation": "${steps.reserve.response.id}"}),
                call(url("/refund"), body={"payment": "${steps.charge.response.id}"}),
                retry=retry,
            ),
            step("ship", call(url("/ship")), call(url("/unship")), retry=retry),
        ],
        name=name,
    )


def calls_made(participants) -> list[str]:
    """Every request the participants got, as "METHOD /path", in arrival order."""
    return [f"{r.method} {r.path}" for r in participants.received()]


def reserve_and_charge(participants, *, name: str, max_attempts: int) -> dict:
    """A two-step definition as the API takes it: reserve (undone by release), then charge
    with the saga's input as its body (see `charge_or_decline`); retries without waiting."""
    url = participants.url
    retry = {"max_attempts": max_attempts, "delay_seconds": 0}
    return {
        "name": name,
        "steps": [
            {
                "name": "reserve",
                "action": {"method": "POST", "url": url("/reserve")},
                "compensation": {"method": "POST", "url": url("/release")},
                "retry": retry,
            },
            {
                "name": "charge",
                "action": {"method": "POST", "url": url("/charge"), "body": "${input}"},
                "retry": retry,
            },
        ],
    }


def charge_or_decline(request):
    """The charge participant: 422 when the saga's input says `decline`, else 200."""
    return Reply(422, {"error": "declined"}) if request.body.get("decline") else Reply(200, {})
