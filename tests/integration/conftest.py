"""Engine fixtures: a scripted participant server and a worker driven a tick at a time."""

import pytest

from sagas.engine.worker import Worker
from tests.participants import ParticipantServer


@pytest.fixture
def participants():
    server = ParticipantServer()
    yield server
    server.close()


@pytest.fixture
def worker():
    return Worker(concurrency=1, poll_seconds=0.05)
