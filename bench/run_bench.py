"""`make bench`: end-to-end saga throughput and latency on this machine.

Starts, as separate processes: nginx serving fixed JSON (the participants), Gunicorn with
gunicorn.conf.py (the API) and saga workers, all against the real PostgreSQL and Redis on
127.0.0.1 (a dedicated `saga_bench` database, recreated each run, and Redis db 9). A
3-step definition is registered through the API; sagas are started through
`POST /api/sagas/`. Then it measures:

- latency: created→finished of sagas started one at a time (concurrency 1), p50/p99;
- throughput: completed sagas per second with 32 client threads, each starting a saga and
  waiting for it to finish before starting the next; their p50/p99;
- CPU milliseconds per saga of every process involved (API, workers, their PostgreSQL
  backends, Redis, nginx; and the load generator itself), read from /proc;
- the floor: the same three HTTP calls made directly to nginx, one set at a time and 32
  sets at a time, with the same keep-alive standard-library client the engine uses.

Every duration comes from the saga rows (created_at → finished_at, both set by the
service), so the client's own latency does not count. Throughput is the number of sagas
over the server-side window (first created_at → last finished_at). The client learns that
a saga finished from one watcher thread that asks PostgreSQL, every --poll-ms, which of
the sagas in flight are done: one small query per poll for all threads, not one per
thread, so the load generator takes little CPU from the service on a small machine.
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
DB_NAME = "saga_bench"
API_KEY = "bench-internal-key"
CLIENT_APP = "saga-bench-client"  # application_name of the bench's own PG connections
TERMINAL = ("completed", "compensated", "cancelled", "failed")
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def wait_for(port: int, path: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = http_get_status(port, path)
        if status is not None and status < 500:
            return
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer within {seconds}s")


def db_connect(dbname: str = DB_NAME):
    conn = psycopg2.connect(
        host="127.0.0.1", user="postgres", dbname=dbname, application_name=CLIENT_APP
    )
    conn.autocommit = True
    return conn


def recreate_database() -> None:
    conn = db_connect("postgres")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DB_NAME}")
    conn.close()


def service_env(args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    env.update(
        DEBUG="False",
        DB_HOST="127.0.0.1",
        DB_USER="postgres",
        DB_NAME=DB_NAME,
        REDIS_HOST="127.0.0.1",
        REDIS_DB=str(args.redis_db),
        SECRET_KEY="bench-secret-key-not-for-production",
        SAGA_API_KEY="bench-client-key",
        INTERNAL_API_KEY=API_KEY,
        # The limiter still counts every request in Redis (its cost is measured); the
        # limit is only high enough that the bench is never answered 429.
        RATE_LIMIT_MAX_REQUESTS="1000000000",
        # The deployed default is INFO: every SAGA event line and access line is written
        # (to stdout, here a file, as in a container).
        LOG_LEVEL=args.log_level,
        LOG_FILE="",
    )
    return env


# --- CPU accounting from /proc -----------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of `pid` and of its children that exited (waited for)."""
    fields = proc_stat(pid)
    if fields is None:
        return None
    return sum(int(value) for value in fields[11:15]) / TICKS  # utime stime cutime cstime


def children_of(parents: set[int]) -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            fields = proc_stat(int(proc.name))
            if fields is not None and int(fields[1]) in parents:
                found.add(int(proc.name))
    return found


class CpuMeter:
    """CPU seconds per group of processes between two snapshots.

    A process that exits between the snapshots loses its share unless its parent waited
    for it (cutime/cstime): Gunicorn does, and the bench turns worker recycling off.
    """

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning the pids of the group now

    def snapshot(self) -> dict[str, dict[int, float]]:
        snap = {}
        for name, pids in self.groups.items():
            snap[name] = {pid: cpu for pid in pids() if (cpu := cpu_of(pid)) is not None}
        return snap

    @staticmethod
    def delta(before: dict, after: dict) -> dict[str, float]:
        used = {}
        for name, now in after.items():
            then = before.get(name, {})
            total = sum(cpu - then.get(pid, 0.0) for pid, cpu in now.items())
            used[name] = total
        return used


def postgres_backends(*, clients: bool) -> set[int]:
    """PIDs of the PostgreSQL backends connected to the bench database: the service's,
    or (clients=True) the bench's own."""
    conn = db_connect("postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s",
                (DB_NAME,),
            )
            rows = cur.fetchall()
    finally:
        conn.close()
    return {pid for pid, app in rows if (app == CLIENT_APP) == clients}


def redis_server_pid() -> set[int]:
    try:
        return {int(redis.Redis(host="127.0.0.1").info("server")["process_id"])}
    except (redis.RedisError, KeyError, ValueError):
        return set()


# --- The processes -----------------------------------------------------------------------


class Nginx:
    """nginx answering every method on every path with a small fixed JSON body."""

    CONFIG = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{{"id": "p-1", "ok": true}}';
        }}
    }}
}}
"""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.config = workdir / "nginx.conf"
        self.config.write_text(self.CONFIG.format(dir=workdir, port=self.port))
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [nginx, "-e", str(self.config.parent / "nginx-error.log"), "-c", str(self.config)],
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.port, "/")

    def pids(self) -> set[int]:
        if self.process is None:
            return set()
        return {self.process.pid} | children_of({self.process.pid})

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def definition(base: str) -> dict:
    def call(method: str, path: str) -> dict:
        return {"method": method, "url": base + path, "timeout_seconds": 5}

    steps = [
        {
            "name": "reserve",
            "action": {**call("POST", "/reserve"), "body": {"order": "${input.order_id}"}},
            "compensation": call("DELETE", "/reserve/${steps.reserve.response.id}"),
        },
        {
            "name": "charge",
            "action": {**call("POST", "/charge"), "body": {"amount": "${input.amount}"}},
            "compensation": call("POST", "/refund"),
        },
        {"name": "ship", "action": call("POST", "/ship")},
    ]
    return {"name": "bench_checkout", "timeout_seconds": 60, "steps": steps}


class Service:
    """Gunicorn (API) and saga worker processes."""

    def __init__(self, env: dict, workdir: Path, args: argparse.Namespace):
        self.env = env
        self.port = free_port()
        self.env["GUNICORN_BIND"] = f"127.0.0.1:{self.port}"
        self.env["GUNICORN_WORKERS"] = str(args.api_workers)
        self.env["GUNICORN_WORKER_CLASS"] = "sync"
        self.env["GUNICORN_MAX_REQUESTS"] = "0"  # no recycling: keeps the CPU account whole
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prom")
        (workdir / "prom").mkdir(exist_ok=True)
        self.args = args
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.log_path = workdir / "service.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115

    def start(self) -> None:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=self.env, check=True
        )
        self.api = self._spawn(
            [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"]
        )
        command = [PYTHON, "manage.py", "run_saga_worker"]
        command += ["--concurrency", str(self.args.worker_concurrency)]
        self.workers = [self._spawn(command) for _ in range(self.args.workers)]
        wait_for(self.port, "/health/")

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log, start_new_session=True
        )

    def api_pids(self) -> set[int]:
        return {self.api.pid} | children_of({self.api.pid})

    def worker_pids(self) -> set[int]:
        return {process.pid for process in self.workers}

    def alive(self) -> bool:
        return all(p.poll() is None for p in [self.api, *self.workers])

    def stop(self) -> None:
        processes = [p for p in [self.api, *self.workers] if p is not None]
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.log.close()


# --- The load generator ------------------------------------------------------------------


class FinishWatcher(threading.Thread):
    """One thread, one PostgreSQL connection: tells client threads when their saga finished.

    Every `poll` seconds (while any saga is awaited) one query asks which of the sagas in
    flight reached a terminal status.
    """

    def __init__(self, poll: float):
        super().__init__(name="finish-watcher", daemon=True)
        self.poll = poll
        self.awaited: dict[str, threading.Event] = {}
        self.statuses: dict[str, str] = {}
        self.cond = threading.Condition()
        self.stopped = False
        self.polls = 0

    def wait(self, saga_id: str, timeout: float = 60.0) -> str:
        done = threading.Event()
        with self.cond:
            self.awaited[saga_id] = done
            self.cond.notify()
        if not done.wait(timeout):
            raise RuntimeError(f"saga {saga_id} did not finish within {timeout}s")
        return self.statuses.pop(saga_id)

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def run(self) -> None:
        conn = db_connect()
        with conn.cursor() as cur:
            while True:
                with self.cond:
                    while not self.awaited and not self.stopped:
                        self.cond.wait()
                    if self.stopped:
                        break
                    ids = list(self.awaited)
                cur.execute(
                    "SELECT id::text, status FROM sagas_sagainstance"
                    " WHERE id = ANY(%s::uuid[]) AND status = ANY(%s)",
                    (ids, list(TERMINAL)),
                )
                self.polls += 1
                finished = cur.fetchall()
                with self.cond:
                    for saga_id, status in finished:
                        self.statuses[saga_id] = status
                        self.awaited.pop(saga_id).set()
                time.sleep(self.poll)
        conn.close()


class Client:
    """Starts sagas through the API (standard-library HTTP client: cheap on the CPU) and
    waits for each to finish."""

    def __init__(self, port: int, watcher: FinishWatcher):
        self.port = port
        self.watcher = watcher
        self.local = threading.local()
        self.start_ms: list[float] = []  # the client's view of POST /api/sagas/

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        return conn

    def start(self, n: int) -> str:
        body = {"definition": "bench_checkout", "input": {"order_id": f"o-{n}", "amount": n}}
        conn = self._conn()
        headers = {"Content-Type": "application/json", "X-API-Key": API_KEY}
        begin = time.perf_counter()
        try:
            conn.request("POST", "/api/sagas/", json.dumps(body), headers)
            response = conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()  # a keep-alive connection the server closed: once more, afresh
            conn.request("POST", "/api/sagas/", json.dumps(body), headers)
            response = conn.getresponse()
            answer = response.read()
        self.start_ms.append((time.perf_counter() - begin) * 1000)
        if response.will_close:
            conn.close()
        if response.status != 202:
            raise RuntimeError(f"start answered {response.status}: {answer[:300]!r}")
        return json.loads(answer)["id"]

    def run_one(self, n: int) -> str:
        saga_id = self.start(n)
        self.watcher.wait(saga_id)
        return saga_id


def run_many(client: Client, numbers: range, concurrency: int) -> list[str]:
    if concurrency == 1:
        return [client.run_one(n) for n in numbers]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(client.run_one, numbers))


# --- Figures -----------------------------------------------------------------------------


def server_figures(saga_ids: list[str]) -> dict:
    """Durations and the throughput window, from the saga rows."""
    conn = db_connect()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT status, EXTRACT(EPOCH FROM finished_at - created_at) * 1000,"
            " EXTRACT(EPOCH FROM created_at), EXTRACT(EPOCH FROM finished_at)"
            " FROM sagas_sagainstance WHERE id = ANY(%s::uuid[])",
            (saga_ids,),
        )
        rows = cur.fetchall()
    conn.close()
    values = sorted(float(ms) for _, ms, _, _ in rows)
    window = max(float(r[3]) for r in rows) - min(float(r[2]) for r in rows)
    return {
        "sagas": len(rows),
        "statuses": dict(Counter(status for status, *_ in rows)),
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "max_ms": values[-1],
        "window_s": window,
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.4999) - 1))
    return values[index]


class Profiler:
    """py-spy sampling every service process during a phase (--profile): collapsed stacks
    per process in the work directory, and a summary of where the samples fall."""

    def __init__(self, workdir: Path, service: Service, seconds: float):
        self.workdir = workdir
        self.service = service
        self.seconds = seconds
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self) -> None:
        spy = str(ROOT / ".venv" / "bin" / "py-spy")
        targets = [("api", pid) for pid in children_of({self.service.api.pid})]
        targets += [("worker", pid) for pid in self.service.worker_pids()]
        for name, pid in targets:
            out = self.workdir / f"profile-{name}-{pid}.txt"
            argv = [spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking"]
            argv += ["--threads", "--format", "raw", "--output", str(out)]
            argv += ["--duration", str(int(self.seconds))]
            process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.running.append((str(out), process))
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> list[str]:
        for _, process in self.running:
            process.send_signal(signal.SIGINT)
        for _, process in self.running:
            process.wait(timeout=60)
        return [out for out, _ in self.running]


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), whoever used them."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICKS


def db_transactions() -> int:
    """Committed transactions in the bench database so far (statistics lag up to ~1 s)."""
    conn = db_connect("postgres")
    with conn.cursor() as cur:
        cur.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (DB_NAME,))
        count = cur.fetchone()[0]
    conn.close()
    return count


def measure(client, meter, count: int, concurrency: int, first: int, profiler=None) -> dict:
    if profiler is not None:
        profiler.start()
    transactions = db_transactions() - client.watcher.polls
    before = meter.snapshot()
    client.start_ms.clear()
    client_cpu = time.process_time()
    busy = machine_busy_seconds()
    started = time.monotonic()
    ids = run_many(client, range(first, first + count), concurrency)
    elapsed = time.monotonic() - started
    busy = machine_busy_seconds() - busy
    client_cpu = time.process_time() - client_cpu
    cpu = CpuMeter.delta(before, meter.snapshot())
    time.sleep(1.2)  # let every backend publish its statistics
    transactions = db_transactions() - client.watcher.polls - transactions  # the service's
    if profiler is not None:
        profiler.stop()
    figures = server_figures(ids)
    figures.update(
        concurrency=concurrency,
        sagas_per_second=count / figures["window_s"],
        client_wall_s=elapsed,
        db_transactions_per_saga=transactions / count,
        start_request_p50_ms=percentile(sorted(client.start_ms), 50),
        start_request_p99_ms=percentile(sorted(client.start_ms), 99),
        cpu_ms_per_saga={name: used * 1000 / count for name, used in cpu.items()},
    )
    figures["cpu_ms_per_saga"]["client"] += client_cpu * 1000 / count
    ours = sum(cpu.values()) + client_cpu
    # What else ran meanwhile (other tests on a shared box) shows here: keep it near 0.
    figures["machine_busy_cores"] = busy / elapsed
    figures["others_busy_cores"] = max(0.0, busy - ours) / elapsed
    return figures


class Floor:
    """The three participant calls of one saga made directly, with the engine's client
    (http.client, one keep-alive connection per thread, JSON bodies)."""

    def __init__(self, port: int):
        self.port = port
        self.local = threading.local()

    def call(self, conn, path: str, body: dict) -> None:
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"bench:{path}"}
        conn.request("POST", path, json.dumps(body).encode(), headers)
        response = conn.getresponse()
        json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"nginx answered {response.status}")

    def three_calls(self, n: int) -> float:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        begin = time.perf_counter()
        self.call(conn, "/reserve", {"order": f"o-{n}"})
        self.call(conn, "/charge", {"amount": n})
        self.call(conn, "/ship", {})
        return (time.perf_counter() - begin) * 1000

    def measure(self, count: int, concurrency: int, nginx: Nginx) -> dict:
        sequential = sorted(self.three_calls(n) for n in range(count))
        nginx_cpu = sum(cpu_of(pid) or 0.0 for pid in nginx.pids())
        client_cpu = time.process_time()
        started = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(self.three_calls, range(count * 5)))
        elapsed = time.monotonic() - started
        client_cpu = time.process_time() - client_cpu
        nginx_cpu = sum(cpu_of(pid) or 0.0 for pid in nginx.pids()) - nginx_cpu
        return {
            "p50_ms": percentile(sequential, 50),
            "p99_ms": percentile(sequential, 99),
            "sets_per_second": count * 5 / elapsed,
            "cpu_ms_per_set": {
                "client": client_cpu * 1000 / (count * 5),
                "nginx": nginx_cpu * 1000 / (count * 5),
            },
        }


def machine() -> dict:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = {}
    try:
        conn = db_connect("postgres")
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            versions["postgresql"] = cur.fetchone()[0].split()[0]
        conn.close()
        versions["redis"] = redis.Redis(host="127.0.0.1").info("server")["redis_version"]
    except (psycopg2.Error, redis.RedisError):
        pass
    return {
        "cpu": re.sub(r"\s+", " ", cpu),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **versions,
    }


# --- Report ------------------------------------------------------------------------------

GROUPS = ("api", "workers", "postgres", "redis")


def cpu_line(cpu: dict) -> str:
    service = sum(cpu[name] for name in GROUPS)
    parts = ", ".join(f"{name} {cpu[name]:.2f}" for name in GROUPS)
    return (
        f"CPU {service:.2f} ms/saga ({parts}); participants (nginx) {cpu['nginx']:.2f},"
        f" load generator {cpu['client']:.2f}"
    )


def busy_line(phase: dict) -> str:
    return (
        f"machine busy {phase['machine_busy_cores']:.2f} cores, of which"
        f" {phase['others_busy_cores']:.2f} by processes outside the bench;"
        f" {phase['db_transactions_per_saga']:.1f} DB transactions/saga;"
        f" POST /api/sagas/ p50 {phase['start_request_p50_ms']:.1f} ms (client side)"
    )


def report(results: dict) -> str:
    m, floor = results["machine"], results["floor"]
    lat, thr = results["latency_c1"], results["throughput"]
    lines = [
        f"Saga Orchestrator benchmark: {m['cpu']}, {m['cores']} cores, Python {m['python']},"
        f" PostgreSQL {m.get('postgresql', '?')}, Redis {m.get('redis', '?')}",
        f"  config: {results['config']}",
        f"  load average before/after: {results['load_before']} / {results['load_after']}",
        f"  concurrency 1 : p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms"
        f" (created→finished, {lat['sagas']} sagas {lat['statuses']})",
        f"                  {cpu_line(lat['cpu_ms_per_saga'])}",
        f"                  {busy_line(lat)}",
        f"  concurrency {thr['concurrency']}: {thr['sagas_per_second']:.0f} sagas/s,"
        f" p50 {thr['p50_ms']:.1f} ms, p99 {thr['p99_ms']:.1f} ms"
        f" ({thr['sagas']} sagas {thr['statuses']})",
        f"                  {cpu_line(thr['cpu_ms_per_saga'])}",
        f"                  {busy_line(thr)}",
        f"  floor (the 3 calls made directly): p50 {floor['p50_ms']:.2f} ms,"
        f" p99 {floor['p99_ms']:.2f} ms one set at a time;"
        f" {floor['sets_per_second']:.0f} sets/s {thr['concurrency']} at a time",
        f"  ratio to the floor: p50 at concurrency 1 {lat['p50_ms'] / floor['p50_ms']:.1f}x,"
        f" throughput {thr['sagas_per_second'] / floor['sets_per_second']:.2f}x",
    ]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-sagas", type=int, default=300)
    parser.add_argument("--throughput-sagas", type=int, default=3000)
    parser.add_argument("--warmup-sagas", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--api-workers", type=int, default=3, help="Gunicorn sync workers")
    parser.add_argument("--workers", type=int, default=1, help="saga worker processes")
    parser.add_argument("--worker-concurrency", type=int, default=8, help="threads per worker")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="client's finish poll")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the API and worker processes with py-spy during the throughput phase"
        " (collapsed stacks kept in the work directory; the figures then include its cost)",
    )
    return parser.parse_args()


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run(args: argparse.Namespace, workdir: Path) -> dict:
    nginx = Nginx(workdir)
    recreate_database()
    redis.Redis(host="127.0.0.1", db=args.redis_db).flushdb()
    service = Service(service_env(args), workdir, args)
    watcher = FinishWatcher(args.poll_ms / 1000)
    try:
        nginx.start()
        service.start()
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        headers = {"Content-Type": "application/json", "X-API-Key": API_KEY}
        conn.request("POST", "/api/saga-definitions/", json.dumps(definition(nginx.base)), headers)
        if conn.getresponse().status != 201:
            raise RuntimeError("could not register the bench definition")
        conn.close()
        watcher.start()
        client = Client(service.port, watcher)
        meter = CpuMeter(
            {
                "api": service.api_pids,
                "workers": service.worker_pids,
                "postgres": lambda: postgres_backends(clients=False),
                "redis": redis_server_pid,
                "nginx": nginx.pids,
                "client": lambda: postgres_backends(clients=True),
            }
        )
        # Warm-up: imports, connections of every API worker and worker thread, caches.
        run_many(client, range(-args.warmup_sagas, 0), args.concurrency)
        run_many(client, range(-2 * args.warmup_sagas, -args.warmup_sagas), 1)
        results = {"machine": machine(), "config": vars(args), "load_before": load()}
        results["latency_c1"] = measure(client, meter, args.latency_sagas, 1, 0)
        profiler = Profiler(workdir, service, 600) if args.profile else None
        results["throughput"] = measure(
            client, meter, args.throughput_sagas, args.concurrency, 100_000, profiler
        )
        results["floor"] = Floor(nginx.port).measure(args.latency_sagas, args.concurrency, nginx)
        results["load_after"] = load()
        results["watcher_polls"] = watcher.polls
        if not service.alive():
            raise RuntimeError("a service process died during the bench")
    finally:
        watcher.stop()
        service.stop()
        nginx.stop()
    return results


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    results = run(args, workdir)
    text = report(results)
    print("\n" + text)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "latest.txt").write_text(text + "\n")
    incomplete = [
        phase
        for phase in ("latency_c1", "throughput")
        if set(results[phase]["statuses"]) != {"completed"}
    ]
    if args.keep_logs or args.profile:
        print(f"\nservice log: {workdir}/service.log")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print("figures: bench/results/latest.json, bench/results/latest.txt")
    if incomplete:
        print(f"NOT ALL SAGAS COMPLETED in {incomplete}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
