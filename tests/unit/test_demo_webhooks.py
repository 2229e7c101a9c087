"""`make run`'s webhooks: it sets a development SAGA_WEBHOOK_SECRET (the user's own wins),
which signs only with DEBUG (like the development keys), and the demo participants'
receiver checks signatures with the README's `verify`, as printed there."""

import importlib.util
import json
import time

from django.conf import settings
from django.test import override_settings

from saga_orchestrator.secrets import webhook_secret_problem
from sagas.engine.webhooks import signature_header
from tests.webhooks import ROOT, readme_verify_source

SECRET = "a-webhook-secret-for-the-demo"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_development_webhook_secret_signs_only_with_debug():
    development = settings.DEV_SECRETS["SAGA_WEBHOOK_SECRET"]

    with override_settings(SAGA_WEBHOOK_SECRET=development, DEBUG=True):
        assert webhook_secret_problem() is None
    with override_settings(SAGA_WEBHOOK_SECRET=development, DEBUG=False):
        assert "placeholder" in webhook_secret_problem()
    # Another public value is no secret, DEBUG or not.
    with override_settings(SAGA_WEBHOOK_SECRET=settings.DEV_SECRETS["SAGA_API_KEY"], DEBUG=True):
        assert "placeholder" in webhook_secret_problem()
    with override_settings(SAGA_WEBHOOK_SECRET=SECRET, DEBUG=False):
        assert webhook_secret_problem() is None


def test_make_run_sets_the_development_webhook_secret_unless_the_user_did():
    run_local = script("run_local")
    development = settings.DEV_SECRETS["SAGA_WEBHOOK_SECRET"]

    assert run_local.embedded_environment({})["SAGA_WEBHOOK_SECRET"] == development
    assert run_local.embedded_environment({"SAGA_WEBHOOK_SECRET": " "})["SAGA_WEBHOOK_SECRET"] == (
        development
    )
    mine = run_local.embedded_environment({"SAGA_WEBHOOK_SECRET": SECRET})
    assert mine["SAGA_WEBHOOK_SECRET"] == SECRET


def test_make_run_has_callbacks_come_back_to_the_port_it_serves_on():
    run_local = script("run_local")

    assert run_local.embedded_environment({})["SAGA_PUBLIC_URL"] == "http://127.0.0.1:8008"
    bound = run_local.embedded_environment({"GUNICORN_BIND": "127.0.0.1:8010"})
    assert bound["SAGA_PUBLIC_URL"] == "http://127.0.0.1:8010"
    public = {"GUNICORN_BIND": "0.0.0.0:8010", "SAGA_PUBLIC_URL": "http://box:8010"}
    assert run_local.embedded_environment(public)["SAGA_PUBLIC_URL"] == "http://box:8010"


def test_the_demo_receiver_verifies_with_the_readme_snippet_as_printed():
    printed = readme_verify_source()
    function = printed[printed.index("def verify(") :]

    assert function in (ROOT / "scripts/demo_participants.py").read_text()


def test_the_demo_receiver_keeps_a_signed_event_and_refuses_a_forged_one(monkeypatch, capsys):
    demo = script("demo_participants")
    monkeypatch.setenv("SAGA_WEBHOOK_SECRET", SECRET)
    event = {"id": "e-1", "type": "step.succeeded", "saga_id": "s-1", "data": {"step": "pay"}}
    raw = json.dumps(event).encode()
    signed = {"X-Saga-Signature": signature_header(SECRET, int(time.time()), raw)}
    forged = {"X-Saga-Signature": signature_header("another-secret", int(time.time()), raw)}

    assert demo.webhook_receive(raw, forged)[0] == 401
    assert demo.webhook_receive(raw, signed) == (200, {"received": "e-1"})
    assert demo.webhook_list({}) == (200, [event])
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "demo: webhook step.succeeded s-1 pay (signature NOT verified: refused)",
        "demo: webhook step.succeeded s-1 pay (signature ok)",
    ]
