"""Start the real API (Gunicorn with gunicorn.conf.py) on a free port for e2e tests."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent


def _wait_until_serving(base: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(base + "/health/", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not serve within {timeout}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def gunicorn(log_dir: Path, env: dict | None = None, timeout: float = 30) -> Iterator[str]:
    """Serve the API; yields its base URL. Own process group, log to a file, always stopped."""
    port = free_port()
    log = log_dir / "gunicorn.log"
    child_env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "LOG_FILE": "",
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"],
            cwd=ROOT,
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, process, log, timeout)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
