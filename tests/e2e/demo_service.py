"""The demo as `make run` starts it, for the e2e tests of its examples: the demo
participants (scripts/demo_participants.py) on a free port, Gunicorn and a worker process,
and one example definition registered with its URLs pointed at that port."""

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from django.conf import settings

from sagas.models import SagaInstance
from tests.e2e.workers import ROOT, WorkerProcess
from tests.gunicorn_process import GunicornProcess, gunicorn_start
from tests.support import free_port, wait_until


@dataclass
class DemoService:
    api: GunicornProcess
    port: int  # the demo participants'
    output: Path  # what they printed

    def start(self, definition: str, saga_input: dict) -> str:
        answer = requests.post(
            self.api.base_url + "/api/sagas/",
            json={"definition": definition, "input": saga_input},
            headers={"X-API-Key": settings.SAGA_API_KEY},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        return answer.json()["id"]

    def printed(self) -> str:
        return self.output.read_text(errors="replace")


@contextlib.contextmanager
def demo_running(
    tmp_path: Path, example: str, *, worker_concurrency: int = 1, **env: str
) -> Iterator[DemoService]:
    """`example` (a file name in examples/) registered and served; `env` goes to every
    process, the participants included."""
    port = free_port()
    output = tmp_path / "participants.out"
    with output.open("wb") as sink:
        participants = subprocess.Popen(
            [sys.executable, "scripts/demo_participants.py", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    # Each process is stopped even when a later one fails to start (no orphans).
    with contextlib.ExitStack() as running:
        running.callback(_stop, participants)
        api = gunicorn_start(tmp_path, workers=1, **env)
        running.callback(api.stop)
        worker = WorkerProcess(
            tmp_path, concurrency=worker_concurrency, SAGA_PUBLIC_URL=api.base_url, **env
        )
        running.callback(worker.close)
        wait_until(lambda: _up(port), timeout=10)
        _register(api, example, port)
        yield DemoService(api, port, output)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=10)


def finished(saga_id: str) -> SagaInstance | None:
    saga = SagaInstance.objects.get(id=saga_id)
    return saga if saga.status in ("completed", "compensated") else None


def _register(api: GunicornProcess, example: str, port: int) -> None:
    text = (ROOT / "examples" / example).read_text()
    definition = json.loads(text.replace("127.0.0.1:8009", f"127.0.0.1:{port}"))
    answer = requests.post(
        api.base_url + "/api/saga-definitions/",
        json=definition,
        headers={"X-API-Key": settings.INTERNAL_API_KEY},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
    except requests.RequestException:
        return False
