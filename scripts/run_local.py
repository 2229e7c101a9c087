"""`make run`: migrate, load the examples, and serve on :8008 with the embedded default.

Starts as child processes the API (Gunicorn with gunicorn.conf.py), one saga worker
(`manage.py run_saga_worker`) and the demo participants of the example checkout saga
(scripts/demo_participants.py on :8009, with its webhook receiver; DEMO_PARTICIPANTS=0
leaves them out), and stops them all on Ctrl-C or when one of them exits.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# The development keys are public (README): by default only this machine may use them.
# GUNICORN_BIND overrides; production (gunicorn.conf.py alone) binds 0.0.0.0:8008.
# The webhook secret is a public one too (settings.DEV_SECRETS, accepted with DEBUG only),
# so that examples/full_checkout.json's `notify` loads and the demo participants can check
# signatures with it.
EMBEDDED_DEFAULTS = {
    "DEBUG": "True",
    "GUNICORN_WORKERS": "2",
    "GUNICORN_BIND": "127.0.0.1:8008",
    "SAGA_WEBHOOK_SECRET": "dev-webhook-secret",
}


def embedded_environment(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with the embedded default's values for what it does not set."""
    environment = {**EMBEDDED_DEFAULTS, **{k: v for k, v in environ.items() if v.strip()}}
    # The demo warehouse calls back to the port this serves on, 8008 or GUNICORN_BIND's.
    environment.setdefault("SAGA_PUBLIC_URL", f"http://127.0.0.1:{bound_port(environment)}")
    return environment


def bound_port(environment: dict[str, str]) -> str:
    """The port of GUNICORN_BIND (its first address when it lists several)."""
    return environment["GUNICORN_BIND"].split(",")[0].rsplit(":", 1)[-1]


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True)


def _stop(signum, frame):
    raise KeyboardInterrupt  # run the cleanup below: never leave Gunicorn orphaned


def main() -> int:
    # SIGTERM (and SIGINT even when a shell started us in the background) stop the children.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    os.environ.update(embedded_environment(dict(os.environ)))
    (ROOT / "data").mkdir(exist_ok=True)
    manage("migrate", "--noinput", "-v", "0")
    if (ROOT / "examples").is_dir() and (
        ROOT / "sagas/management/commands/load_saga_definitions.py"
    ).exists():
        manage("load_saga_definitions", "examples")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saga_orchestrator.settings")
    import django
    from django.conf import settings

    django.setup()
    bind = os.environ["GUNICORN_BIND"]
    port = bound_port(os.environ)
    print(f"Saga Orchestrator on http://127.0.0.1:{port}  (docs: /api/docs/)", flush=True)
    print(f"  console      http://127.0.0.1:{port}/console/ (sign in with a key)", flush=True)
    print(f"  listening on {bind} (GUNICORN_BIND)", flush=True)
    print(f"  client key   X-API-Key: {settings.SAGA_API_KEY}", flush=True)
    print(f"  internal key X-API-Key: {settings.INTERNAL_API_KEY}", flush=True)
    commands = [
        [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"],
        [PYTHON, "manage.py", "run_saga_worker", "--concurrency", "2", "--grace-seconds", "10"],
    ]
    if os.environ.get("DEMO_PARTICIPANTS", "1") != "0":
        commands.append([PYTHON, "scripts/demo_participants.py"])
        print("  demo participants on http://127.0.0.1:8009 (README: Development)", flush=True)
    stopping = []
    # Ctrl-C or SIGTERM: stop the children in order (set explicitly: a shell that starts
    # us in the background would otherwise have us ignore SIGINT).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.append(True))
    children = [subprocess.Popen(command, cwd=ROOT) for command in commands]
    try:
        # Serve until a signal, or until any child exits (then stop the others).
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        exited = [child.returncode for child in children if child.poll() is not None]
        return 0 if stopping or not exited else exited[0]
    finally:
        stop(children)


def stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":
    sys.exit(main())
