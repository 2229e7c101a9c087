"""`manage.py saga_worker_alive`: the saga_worker container's health check."""

import socket
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from sagas.models import WorkerHeartbeat
from tests.builders import heartbeat_create

pytestmark = pytest.mark.django_db


@override_settings(SAGA_WORKER_HEARTBEAT_SECONDS=10)
def test_alive_with_a_fresh_heartbeat_from_this_host():
    heartbeat_create("w1", seconds_ago=5)
    WorkerHeartbeat.objects.update(hostname=socket.gethostname())
    out = StringIO()
    call_command("saga_worker_alive", stdout=out)
    assert "1 saga worker(s) alive" in out.getvalue()


@override_settings(SAGA_WORKER_HEARTBEAT_SECONDS=10)
def test_fails_with_a_stale_heartbeat_or_another_hosts():
    heartbeat_create("stale", seconds_ago=31)
    WorkerHeartbeat.objects.update(hostname=socket.gethostname())
    heartbeat_create("elsewhere", seconds_ago=1)  # hostname "test"
    with pytest.raises(CommandError, match="no heartbeat from a worker"):
        call_command("saga_worker_alive")
