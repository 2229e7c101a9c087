"""Engine fixtures: a worker driven a tick at a time (the participant server is shared:
tests/conftest.py)."""

import pytest

from sagas.engine.worker import Worker


@pytest.fixture
def worker():
    return Worker(concurrency=1, poll_seconds=0.05)
