"""The limit holds across Gunicorn worker processes sharing one Redis (DESIGN §3)."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.security_helpers import unique_ip, unique_key
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture
def gunicorn(tmp_path):
    """Start Gunicorn with the security test URLconf; yields (base_url, env, log_path)."""
    processes = []

    def start(**env_overrides):
        port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.security_settings",
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "GUNICORN_WORKERS": "4",
            "SAGA_API_KEY": unique_key("client"),
            "INTERNAL_API_KEY": unique_key("internal"),
            "LOG_FILE": "",
            **env_overrides,
        }
        log_path = tmp_path / f"gunicorn-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    "gunicorn.conf.py",
                    "saga_orchestrator.wsgi",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(base, process, log_path), timeout=30, interval=0.1)
        workers = int(env["GUNICORN_WORKERS"])
        wait_until(lambda: _all_workers_answer(base, workers), timeout=30, interval=0)
        return base, env, log_path

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def _up(base, process, log_path) -> bool:
    if process.poll() is not None:
        raise AssertionError("Gunicorn exited:\n" + log_path.read_text())
    try:
        return requests.get(base + "/open/", timeout=3).status_code == 200
    except requests.RequestException:  # not listening yet, or workers still booting
        return False


def _all_workers_answer(base: str, workers: int) -> bool:
    """Busy every worker at once until each has answered (all booted and serving)."""
    with ThreadPoolExecutor(max_workers=workers * 2) as pool:
        responses = list(
            pool.map(lambda _: requests.get(base + "/open/?sleep=0.2", timeout=10), range(8))
        )
    return len({r.headers["X-Worker-Pid"] for r in responses}) == workers


def _hammer(url: str, key: str, total: int) -> list[requests.Response]:
    def one(_):
        return requests.get(url, headers={"X-API-Key": key}, timeout=10)

    with ThreadPoolExecutor(max_workers=24) as pool:
        return list(pool.map(one, range(total)))


def test_four_workers_let_exactly_the_limit_through(gunicorn):
    """One server for both buckets (start-up is the slow part): per key, then per client
    IP for unknown keys behind a trusted proxy."""
    limit, total = 20, 80
    base, env, log_path = gunicorn(
        RATE_LIMIT_MAX_REQUESTS=str(limit), RATE_LIMIT_WINDOW="60", TRUSTED_PROXIES="127.0.0.1"
    )
    url, key = base + "/api/limited/", env["SAGA_API_KEY"]

    responses = _hammer(url, key, total)
    codes = [r.status_code for r in responses]
    assert codes.count(200) == limit, codes
    assert codes.count(429) == total - limit
    assert len({r.headers["X-Worker-Pid"] for r in responses}) > 1, "one process served all"
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Limit"] == str(limit)
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses if r.ok)
    assert remaining == list(range(limit))  # each success saw its own count

    client, neighbour = unique_ip(), unique_ip()

    def guess(i, ip=client):
        headers = {"X-API-Key": f"guess-{i}", "X-Forwarded-For": f"{unique_ip()}, {ip}"}
        return requests.get(url, headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=24) as pool:
        codes = list(pool.map(guess, range(total)))
    assert codes.count(401) == limit
    assert codes.count(429) == total - limit
    assert guess(0, ip=neighbour) == 401

    # The open endpoint stays unlimited, and the keys never reach the log.
    assert all(requests.get(base + "/open/", timeout=5).ok for _ in range(limit + 5))
    log = log_path.read_text()
    assert env["SAGA_API_KEY"] not in log and env["INTERNAL_API_KEY"] not in log


def test_window_resets_across_workers(gunicorn):
    base, env, _ = gunicorn(
        RATE_LIMIT_MAX_REQUESTS="3", RATE_LIMIT_WINDOW="2", GUNICORN_WORKERS="2"
    )
    url, headers = base + "/api/limited/", {"X-API-Key": env["SAGA_API_KEY"]}
    codes = [requests.get(url, headers=headers, timeout=5).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    started = time.monotonic()
    fresh = wait_until(
        lambda: (r := requests.get(url, headers=headers, timeout=5)).ok and r,
        timeout=5,
        interval=0.05,
    )
    assert time.monotonic() - started < 2.5
    assert fresh.headers["X-RateLimit-Remaining"] == "2"
