"""End-to-end fixtures: saga worker processes (tests/e2e/workers.py), killed at the end."""

import pytest

from tests.e2e.workers import WorkerProcess


@pytest.fixture
def workers(tmp_path):
    """Start worker processes with `workers(**env)`; every one is killed after the test."""
    started = []

    def start(**kwargs) -> WorkerProcess:
        process = WorkerProcess(tmp_path, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()
