"""CPU per request of `POST /api/sagas/` under a real Gunicorn, beside two references.

    .venv/bin/python bench/start_cost.py [--requests 2000] [--profile]

Starts Gunicorn (one sync worker, gunicorn.conf.py, INFO logging, the rate limiter on)
against the local PostgreSQL (database `saga_start_cost`, recreated) and Redis (db 15 or
`--redis-db`, flushed first: pick one nobody else uses), registers a 3-step definition,
and sends requests one at a time, measuring the CPU of the Gunicorn worker, of its
PostgreSQL backend and of the Redis server from /proc:

- `start`: POST /api/sagas/ (no saga worker runs: the sagas stay pending);
- `keyed`: the same, each with a new Idempotency-Key;
- `health`: GET /health/ (DRF, no dependency: Gunicorn + Django + DRF's pipeline);
- `plain`: a plain Django view (`HttpResponse`) behind the same middleware (the one
  Gunicorn serves the project's settings plus that URL).

`--profile` samples the worker with py-spy during the `start` phase (`--gil`: only while
Python runs, so network waits do not count) and prints bench/profile_summary.py's
summary. The box is shared and its speed drifts: compare figures of one run, or of runs
made back to back.
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from profile_summary import summarize  # noqa: E402
from run_bench import children_of, cpu_of, free_port, wait_for  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
DB_NAME = "saga_start_cost"
API_KEY = "start-cost-internal-key"

PLAIN_SETTINGS = """
from saga_orchestrator.settings import *  # noqa: F403
ROOT_URLCONF = "start_cost_urls"
"""
PLAIN_URLS = """
from django.http import HttpResponse
from django.urls import include, path

def plain(request):
    return HttpResponse(b'{"status": "ok"}', content_type="application/json")

urlpatterns = [path("plain/", plain), path("", include("saga_orchestrator.urls"))]
"""


def recreate_database() -> None:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DB_NAME}")
    conn.close()


def backend_pids() -> set[int]:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (DB_NAME,),
        )
        pids = {row[0] for row in cur.fetchall()}
    conn.close()
    return pids


def service_env(workdir: Path, settings_module: str, redis_db: int) -> dict:
    env = dict(os.environ)
    env.update(
        DEBUG="False",
        DB_HOST="127.0.0.1",
        DB_USER="postgres",
        DB_NAME=DB_NAME,
        REDIS_HOST="127.0.0.1",
        REDIS_DB=str(redis_db),
        SECRET_KEY="start-cost-secret-key-not-for-production",
        SAGA_API_KEY="start-cost-client-key",
        INTERNAL_API_KEY=API_KEY,
        RATE_LIMIT_MAX_REQUESTS="1000000000",
        LOG_LEVEL="INFO",
        LOG_FILE="",
        GUNICORN_WORKERS="1",
        GUNICORN_WORKER_CLASS="sync",
        GUNICORN_MAX_REQUESTS="0",
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "prom"),
        DJANGO_SETTINGS_MODULE=settings_module,
        PYTHONPATH=f"{workdir}:{ROOT}",
    )
    return env


class Gunicorn:
    def __init__(self, workdir: Path, settings_module: str, redis_db: int):
        self.port = free_port()
        self.env = service_env(workdir, settings_module, redis_db)
        self.env["GUNICORN_BIND"] = f"127.0.0.1:{self.port}"
        self.log = open(workdir / "api.log", "w")  # noqa: SIM115
        argv = [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"]
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log, start_new_session=True
        )
        wait_for(self.port, "/health/")
        self.worker = next(iter(children_of({self.process.pid})))

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=40)
        self.log.close()


def request(
    port: int, method: str, path: str, body: dict | None = None, key: str | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"X-API-Key": API_KEY}
    if key is not None:
        headers["Idempotency-Key"] = key
    payload = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        payload = json.dumps(body)
    conn.request(method, path, payload, headers)
    response = conn.getresponse()
    answer = response.read()
    conn.close()  # the sync worker closes every connection anyway
    return response.status, answer


def definition() -> dict:
    call = {"method": "POST", "url": "http://127.0.0.1:9/x", "timeout_seconds": 5}
    steps = [{"name": name, "action": call} for name in ("reserve", "charge", "ship")]
    return {"name": "bench_checkout", "timeout_seconds": 60, "steps": steps}


def start_body(n: int) -> dict:
    return {"definition": "bench_checkout", "input": {"order_id": f"o-{n}", "amount": n}}


def measure(
    server: Gunicorn, method: str, path: str, count: int, body=None, keyed: bool = False
) -> dict:
    """CPU ms per request of the Gunicorn worker, its PostgreSQL backend(s) and Redis;
    `keyed`: every request carries a new Idempotency-Key."""
    redis_pid = int(redis.Redis(host="127.0.0.1").info("server")["process_id"])
    groups = {
        "api": lambda: {server.worker},
        "postgres": backend_pids,
        "redis": lambda: {redis_pid},
    }
    for n in range(min(200, count)):  # warm-up
        request(server.port, method, path, body(n) if body else None, _key(keyed, path, n))
    before = {name: {pid: cpu_of(pid) for pid in pids()} for name, pids in groups.items()}
    expected = None
    for n in range(count):
        number = 10**6 + n
        key = _key(keyed, path, number)
        status, answer = request(server.port, method, path, body(number) if body else None, key)
        if expected is None:
            expected = status
        if status != expected or status >= 400:
            raise RuntimeError(f"{method} {path} answered {status}: {answer[:300]!r}")
    figures = {}
    for name, pids in groups.items():
        used = sum((cpu_of(pid) or 0.0) - before[name].get(pid, 0.0) for pid in pids())
        figures[name] = used * 1000 / count
    return figures


def _key(keyed: bool, path: str, n: int) -> str | None:
    return f"{path}-{n}" if keyed else None


def profiled(server: Gunicorn, workdir: Path, count: int) -> str:
    out = workdir / "profile-start.txt"
    spy = str(ROOT / ".venv" / "bin" / "py-spy")
    argv = [spy, "record", "--pid", str(server.worker), "--rate", "500", "--nonblocking", "--gil"]
    argv += ["--format", "raw", "--output", str(out)]
    spy_process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    for n in range(count):
        request(server.port, "POST", "/api/sagas/", start_body(2 * 10**6 + n))
    spy_process.send_signal(signal.SIGINT)
    spy_process.wait(timeout=60)
    prefixes = ("sagas/", "saga_orchestrator/", "rest_framework/", "django/", "gunicorn/")
    return summarize([out], 60, prefixes)


def line(name: str, figures: dict) -> str:
    parts = ", ".join(f"{key} {value:.2f}" for key, value in figures.items())
    return f"  {name:<7} CPU ms/request: {sum(figures.values()):.2f} ({parts})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--redis-db", type=int, default=15, help="flushed first (default 15)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="saga-start-cost-"))
    (workdir / "prom").mkdir()
    (workdir / "start_cost_settings.py").write_text(PLAIN_SETTINGS)
    (workdir / "start_cost_urls.py").write_text(PLAIN_URLS)
    recreate_database()
    redis.Redis(host="127.0.0.1", db=args.redis_db).flushdb()
    env = service_env(workdir, "saga_orchestrator.settings", args.redis_db)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    server = Gunicorn(workdir, "start_cost_settings", args.redis_db)
    try:
        status, answer = request(server.port, "POST", "/api/saga-definitions/", definition())
        if status not in (200, 201):
            raise RuntimeError(f"definition: {status} {answer[:300]!r}")
        results = {
            "start": measure(server, "POST", "/api/sagas/", args.requests, start_body),
            "keyed": measure(server, "POST", "/api/sagas/", args.requests, start_body, True),
            "health": measure(server, "GET", "/health/", args.requests),
            "plain": measure(server, "GET", "/plain/", args.requests),
        }
        for name, figures in results.items():
            print(line(name, figures))
        if args.profile:
            print(profiled(server, workdir, args.requests))
    finally:
        server.stop()
    print(f"  logs and profile in {workdir}")


if __name__ == "__main__":
    main()
