"""Worker processes for end-to-end tests: `manage.py run_saga_worker` with the test
database and Redis, in their own process group, logging to a file."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def worker_env(**overrides) -> dict:
    env = dict(os.environ)
    env.update(
        DB_NAME=connection.settings_dict["NAME"],  # the test database
        REDIS_DB=str(settings.REDIS_DB),
        LOG_FILE="",
        SAGA_WORKER_POLL_SECONDS="0.2",
        SAGA_WORKER_HEARTBEAT_SECONDS="0.5",
    )
    if connection.vendor == "sqlite":
        env["SQLITE_PATH"] = connection.settings_dict["NAME"]  # the test database file
    env.update({key: str(value) for key, value in overrides.items()})
    return env


class WorkerProcess:
    def __init__(self, log_dir: Path, *, concurrency: int = 2, **env):
        self.log_path = log_dir / f"worker-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "run_saga_worker",
                "--concurrency",
                str(concurrency),
                "--grace-seconds",
                "10",
            ],
            cwd=ROOT,
            env=worker_env(**env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.kill()
        self._log.close()
