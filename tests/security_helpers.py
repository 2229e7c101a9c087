"""Builders shared by the security tests: unique keys and client IPs (so tests running at
the same time on one Redis database never share a window), settings for the test URLconf,
free ports, a throwaway redis-server, and a log capture that sees every record."""

import contextlib
import io
import logging
import random
import shutil
import socket
import subprocess
import uuid
from types import SimpleNamespace

from django.test import override_settings

from saga_orchestrator.logging import RequestIdFilter, UtcJsonFormatter
from tests.support import free_port, wait_until

URLS = "tests.security_urls"


def unique_key(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex}"


def unique_ip() -> str:
    """An address in 198.18.0.0/15 (benchmarking range), random per call."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@contextlib.contextmanager
def security_settings(limit: int = 100, window: int = 60, **extra):
    """Test URLconf, a limit, and fresh keys; yields them as .client_key / .internal_key."""
    keys = SimpleNamespace(client_key=unique_key("client"), internal_key=unique_key("internal"))
    with override_settings(
        ROOT_URLCONF=URLS,
        RATE_LIMIT_MAX_REQUESTS=limit,
        RATE_LIMIT_WINDOW=window,
        SAGA_API_KEY=keys.client_key,
        INTERNAL_API_KEY=keys.internal_key,
        **extra,
    ):
        yield keys


@contextlib.contextmanager
def throwaway_redis(*extra_args: str, port: int | None = None):
    """A redis-server of our own on a free port (yields (process, port)); killed by PID.
    `extra_args`: more redis-server options (e.g. "--replicaof", "127.0.0.1", "1");
    `port`: reuse the port of one that was killed (a restart, for recovery tests)."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            shutil.which("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(port), timeout=10)
        yield process, port
    finally:
        process.kill()
        process.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def captured_logs(level: int = logging.DEBUG):
    """Every record any logger emits, formatted like production (JSON, request_id), with
    exception tracebacks. Yields (stream, records)."""
    stream, records = io.StringIO(), []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    text = logging.StreamHandler(stream)
    text.setFormatter(UtcJsonFormatter("%(levelname)s %(name)s %(message)s"))
    handlers = [text, Keep()]
    root = logging.getLogger()
    old_level = root.level
    for handler in handlers:
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level)
    try:
        yield stream, records
    finally:
        root.setLevel(old_level)
        for handler in handlers:
            root.removeHandler(handler)
