"""Start the real Gunicorn (gunicorn.conf.py) as a child process for e2e tests.

Binds port 0 (the kernel picks a free port; we read it from Gunicorn's log), runs in its
own process group, logs to a file, and passes the test database's name to the workers.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
BOOTED = re.compile(r"Booting worker with pid: (\d+)")


@dataclass
class GunicornProcess:
    process: subprocess.Popen
    output: Path
    base_url: str = ""

    def get(self, path: str, **headers: str) -> requests.Response:
        return requests.get(self.base_url + path, headers=headers, timeout=30)

    def output_text(self) -> str:
        return self.output.read_text(errors="replace")

    def booted_pids(self) -> set[int]:
        return {int(pid) for pid in BOOTED.findall(self.output_text())}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def child_env(**overrides: str) -> dict[str, str]:
    """This test process's environment, pointed at the test database, plus overrides.

    The calling test must be marked `django_db` (that creates the test database and
    switches the connection's NAME to it): children never touch a real database.
    """
    from django.db import connection

    name = str(connection.settings_dict["NAME"])
    assert Path(name).name.startswith("test"), "mark the test django_db: no test database"
    env = dict(os.environ)
    env["DB_NAME"] = name
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = name  # the test database's file (tests/conftest.py)
    env.update(overrides)
    return env


def gunicorn_start(tmp_path: Path, *, workers: int = 2, **env: str) -> GunicornProcess:
    output = tmp_path / "gunicorn.out"
    defaults = {
        "GUNICORN_BIND": "127.0.0.1:0",
        "GUNICORN_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_FILE": "",
    }
    environment = child_env(**{**defaults, **env})
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"],
            cwd=ROOT,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = GunicornProcess(process=process, output=output)
    try:
        server.base_url = f"http://127.0.0.1:{_wait_for_port(server)}"
        _wait_until(lambda: len(server.booted_pids()) >= workers, server, "workers booted")
        _wait_until(lambda: _answers(server), server, "first response")
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_port(server: GunicornProcess) -> int:
    found: list[str] = []

    def listening() -> bool:
        found.extend(LISTENING.findall(server.output_text()))
        return bool(found)

    _wait_until(listening, server, "listening")
    return int(found[0])


def _answers(server: GunicornProcess) -> bool:
    try:
        server.get("/metrics")
    except requests.ConnectionError:
        return False
    return True


def _wait_until(condition, server: GunicornProcess, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"Gunicorn exited before {what}:\n{server.output_text()[-3000:]}")
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"Gunicorn: no {what} after {timeout}s:\n{server.output_text()[-3000:]}")


def json_lines(path: Path, *, growing: bool = False) -> list[dict]:
    """Every line of a log file, parsed (fails on the first line that is not JSON).

    `growing`: the file is still being written; a last line without its newline is skipped.
    """
    text = path.read_text()
    if growing and not text.endswith("\n"):
        text = text.rpartition("\n")[0]
    return [json.loads(line) for line in text.splitlines()]
