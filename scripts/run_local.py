"""`make run`: migrate, load the examples, and serve on :8008 with the embedded default.

Starts the API (Gunicorn with gunicorn.conf.py) as a child process and stops it on Ctrl-C.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, check=True)


def _stop(signum, frame):
    raise KeyboardInterrupt  # run the cleanup below: never leave Gunicorn orphaned


def main() -> int:
    # SIGTERM (and SIGINT even when a shell started us in the background) stop the children.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    os.environ.setdefault("DEBUG", "True")
    os.environ.setdefault("GUNICORN_WORKERS", "2")
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
    port = os.environ.get("GUNICORN_BIND", "0.0.0.0:8008").rsplit(":", 1)[-1]
    print(f"Saga Orchestrator on http://127.0.0.1:{port}  (docs: /api/docs/)", flush=True)
    print(f"  client key   X-API-Key: {settings.SAGA_API_KEY}", flush=True)
    print(f"  internal key X-API-Key: {settings.INTERNAL_API_KEY}", flush=True)
    children = [
        subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"], cwd=ROOT
        ),
    ]
    try:
        return children[0].wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
