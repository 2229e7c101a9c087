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
  sets at a time, with the same keep-alive standard-library client the engine uses;
- the bare reference (bench/bare.py): the leanest durable orchestrator for the same saga,
  at concurrency 1 and 32, in its own database; our figures as ratios to it, beside the
  targets of issue 9, and the service's DB commits per saga (pg_stat_database);
- with --sweep, throughput at concurrency 32 with 1, 2 and 4 saga worker processes and
  with 2 to 6 Gunicorn workers.

Every duration comes from the saga rows (created_at → finished_at, both set by the
service), so the client's own latency does not count. Throughput is the number of sagas
over the server-side window (first created_at → last finished_at). The client learns that
a saga finished from one watcher thread that asks PostgreSQL, every --poll-ms, which of
the sagas in flight are done: one small query per poll for all threads, not one per
thread, so the load generator takes little CPU from the service on a small machine.
"""

import argparse
import contextlib
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
from figures import SERVICE_GROUPS, percentile, service_commits, service_cpu_ms, targets

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
# Recreated each run; another name lets two checkouts bench on one PostgreSQL.
DB_NAME = os.environ.get("BENCH_DB_NAME", "saga_bench")
BARE_DB_NAME = f"{DB_NAME}_bare"
# PostgreSQL publishes a backend's statistics at most every second while it works and
# within 10 s once it is idle (PGSTAT_IDLE_INTERVAL): the commit counts wait that long.
STATS_QUIET_SECONDS = 10.5
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


def recreate_database(name: str = DB_NAME) -> None:
    conn = db_connect("postgres")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {name}")
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

    def __init__(self, env: dict, workdir: Path, args: argparse.Namespace, log="service.log"):
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
        self.log_path = workdir / log
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
        self.api, self.workers = None, []


# --- The load generator ------------------------------------------------------------------


class FinishWatcher(threading.Thread):
    """One thread, one PostgreSQL connection: tells client threads when their saga finished.

    Every `poll` seconds (while any saga is awaited) one query asks which of the sagas in
    flight reached a terminal status. Each query is one committed transaction in the
    service's database, counted in `polls` so the commit figure leaves them out; one
    watcher per phase, whose connection closes at its end (a backend publishes its
    statistics as it exits, so none of its queries is counted late).
    """

    def __init__(self, poll: float):
        super().__init__(name="finish-watcher", daemon=True)
        self.poll = poll
        self.awaited: dict[str, threading.Event] = {}
        self.statuses: dict[str, str] = {}
        self.cond = threading.Condition()
        self.stopped = False
        self.polls = 0
        # Connected here, before the phase's first CPU snapshot, so its backend is counted.
        self.conn = db_connect()

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
        self.join(timeout=10)

    def run(self) -> None:
        with self.conn.cursor() as cur:
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
        self.conn.close()


class Client:
    """Starts sagas through the API (standard-library HTTP client: cheap on the CPU) and
    waits for each to finish."""

    def __init__(self, port: int, poll: float):
        self.port = port
        self.poll = poll
        self.watcher: FinishWatcher | None = None  # one per phase (watching)
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


@contextlib.contextmanager
def watching(client: Client):
    """A finish watcher for one phase; its connection closes as the phase ends."""
    client.watcher = watcher = FinishWatcher(client.poll)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()


def run_many(client: Client, numbers: range, concurrency: int) -> list[str]:
    if concurrency == 1:
        return [client.run_one(n) for n in numbers]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(client.run_one, numbers))


def warm_up(client: Client, numbers: range, concurrency: int) -> None:
    with watching(client):
        run_many(client, numbers, concurrency)


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
            argv = [spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--gil"]
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


def db_commits(name: str = DB_NAME) -> int:
    """Committed transactions in the service's database so far, read-only ones included, as
    its backends have published them (read from the `postgres` database: this read is not
    one of them)."""
    conn = db_connect("postgres")
    with conn.cursor() as cur:
        cur.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,))
        count = cur.fetchone()[0]
    conn.close()
    return count


class CommitLedger:
    """Readings of the service database's commit count, each after a quiet wait long enough
    for every backend to publish its statistics, and the idle rate that the quiet waits add
    (measured while the service is idle, during the floor and the bare reference)."""

    def __init__(self):
        self.count, self.at = self.read_quiet()

    @staticmethod
    def read_quiet() -> tuple[int, float]:
        time.sleep(STATS_QUIET_SECONDS)
        return db_commits(), time.monotonic()

    def after(self, phase: dict) -> None:
        """Note the commits of `phase` (ended at phase["ended_at"]) and the quiet wait."""
        before = self.count
        self.count, self.at = self.read_quiet()
        phase["db_commits"] = {
            "before": before,
            "after": self.count,
            "bench_queries": phase["bench_queries"],
            "quiet_seconds": self.at - phase["ended_at"],
        }

    def idle_rate(self) -> float:
        """Commits per second the service made since the last reading, having had no work."""
        return (db_commits() - self.count) / (time.monotonic() - self.at)


def commits_per_saga(phase: dict, idle_per_second: float) -> float:
    commits = service_commits(**phase["db_commits"], idle_per_second=idle_per_second)
    return commits / phase["sagas"]


def measure(client, meter, count: int, concurrency: int, first: int, profiler=None) -> dict:
    if profiler is not None:
        profiler.start()
    with watching(client) as watcher:
        usage = run_metered(client, meter, range(first, first + count), concurrency)
    if profiler is not None:
        profiler.stop()
    figures = server_figures(usage.pop("ids"))
    figures.update(usage)
    figures.update(
        concurrency=concurrency,
        sagas_per_second=count / figures["window_s"],
        # The bench's, not the service's: the watcher's queries and server_figures' one, and
        # the start of each one's connection (PostgreSQL counts a commit as a backend starts).
        bench_queries=watcher.polls + 1 + 2,
        start_request_p50_ms=percentile(sorted(client.start_ms), 50),
        start_request_p99_ms=percentile(sorted(client.start_ms), 99),
    )
    return figures


def run_metered(client: Client, meter: CpuMeter, numbers: range, concurrency: int) -> dict:
    """Run the sagas with the CPU of every process and of the machine measured."""
    before = meter.snapshot()
    client.start_ms.clear()
    client_cpu = time.process_time()
    busy = machine_busy_seconds()
    started = time.monotonic()
    ids = run_many(client, numbers, concurrency)
    ended = time.monotonic()
    busy = machine_busy_seconds() - busy
    client_cpu = time.process_time() - client_cpu
    cpu = CpuMeter.delta(before, meter.snapshot())
    cpu["client"] += client_cpu
    elapsed = ended - started
    # What else ran meanwhile (other tests on a shared box) shows here: keep it near 0.
    return {
        "ids": ids,
        "client_wall_s": elapsed,
        "ended_at": ended,
        "cpu_ms_per_saga": {name: used * 1000 / len(ids) for name, used in cpu.items()},
        "machine_busy_cores": busy / elapsed,
        "others_busy_cores": max(0.0, busy - sum(cpu.values())) / elapsed,
    }


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


def bare_reference(nginx: Nginx, concurrency: int, sagas: int, warmup: int) -> dict:
    """The bare reference (bench/bare.py) in its own process, at `concurrency`."""
    argv = [PYTHON, str(ROOT / "bench" / "bare.py"), "--port", str(nginx.port)]
    argv += ["--dbname", BARE_DB_NAME, "--concurrency", str(concurrency)]
    argv += ["--sagas", str(sagas), "--warmup", str(warmup)]
    commits = db_commits(BARE_DB_NAME)
    nginx_cpu = sum(cpu_of(pid) or 0.0 for pid in nginx.pids())
    busy = machine_busy_seconds()
    started = time.monotonic()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the bare reference failed: {done.stderr[-2000:]}")
    elapsed = time.monotonic() - started
    busy = machine_busy_seconds() - busy
    nginx_cpu = sum(cpu_of(pid) or 0.0 for pid in nginx.pids()) - nginx_cpu
    result = json.loads(done.stdout)
    result["machine_busy_cores"] = busy / elapsed
    ours = result["cpu_seconds_all"] + nginx_cpu
    result["others_busy_cores"] = max(0.0, busy - ours) / elapsed
    # A check of the commit counting: its backends publish their counts as they exit.
    time.sleep(1.0)
    commits = db_commits(BARE_DB_NAME) - commits - result["other_transactions"]
    result["db_commits_per_saga"] = commits / result["sagas_run"]
    return result


# --- Sweeps ------------------------------------------------------------------------------


def register_definition(port: int, base: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json", "X-API-Key": API_KEY}
    conn.request("POST", "/api/saga-definitions/", json.dumps(definition(base)), headers)
    if conn.getresponse().status != 201:
        raise RuntimeError("could not register the bench definition")
    conn.close()


def service_meter(service: Service, nginx: Nginx) -> CpuMeter:
    return CpuMeter(
        {
            "api": service.api_pids,
            "workers": service.worker_pids,
            "postgres": lambda: postgres_backends(clients=False),
            "redis": redis_server_pid,
            "nginx": nginx.pids,
            "client": lambda: postgres_backends(clients=True),
        }
    )


def sweep_point(args: argparse.Namespace, workdir: Path, nginx: Nginx, **config) -> dict:
    """Throughput at --concurrency of a fresh service with `config` (workers, api_workers)
    in place of the run's own: short phases, on a recreated database."""
    point_args = argparse.Namespace(**{**vars(args), **config})
    recreate_database()
    redis.Redis(host="127.0.0.1", db=args.redis_db).flushdb()
    log = f"service-{point_args.workers}w-{point_args.api_workers}api.log"
    service = Service(service_env(point_args), workdir, point_args, log)
    try:
        service.start()
        register_definition(service.port, nginx.base)
        client = Client(service.port, args.poll_ms / 1000)
        warm_up(client, range(-args.sweep_warmup, 0), args.concurrency)
        figures = measure(
            client, service_meter(service, nginx), args.sweep_sagas, args.concurrency, 0
        )
    finally:
        service.stop()
    point = {"workers": point_args.workers, "api_workers": point_args.api_workers}
    return point | {key: figures[key] for key in SWEPT}


SWEPT = ("sagas_per_second", "p50_ms", "cpu_ms_per_saga", "machine_busy_cores", "others_busy_cores")


def sweeps(args: argparse.Namespace, workdir: Path, nginx: Nginx) -> dict:
    return {
        "workers": [sweep_point(args, workdir, nginx, workers=n) for n in (1, 2, 4)],
        "api_workers": [sweep_point(args, workdir, nginx, api_workers=n) for n in range(2, 7)],
    }


# --- Report ------------------------------------------------------------------------------


def cpu_line(cpu: dict) -> str:
    parts = ", ".join(f"{name} {cpu[name]:.2f}" for name in SERVICE_GROUPS)
    return (
        f"CPU {service_cpu_ms(cpu):.2f} ms/saga ({parts}); participants (nginx) {cpu['nginx']:.2f},"
        f" load generator {cpu['client']:.2f}"
    )


def busy_line(phase: dict) -> str:
    commits = phase["db_commits"]
    return (
        f"machine busy {phase['machine_busy_cores']:.2f} cores, of which"
        f" {phase['others_busy_cores']:.2f} by processes outside the bench;"
        f" {phase['db_commits_per_saga']:.2f} DB commits/saga ({commits['bench_queries']}"
        f" queries of the bench's own taken out);"
        f" POST /api/sagas/ p50 {phase['start_request_p50_ms']:.1f} ms (client side)"
    )


def bare_lines(c1: dict, c32: dict) -> list[str]:
    lines = []
    for bare in (c1, c32):
        cpu = bare["cpu_ms_per_saga"]
        lines.append(
            f"  bare reference, concurrency {bare['concurrency']}: p50 {bare['p50_ms']:.1f} ms,"
            f" p99 {bare['p99_ms']:.1f} ms, {bare['sagas_per_second']:.0f} sagas/s;"
            f" CPU {cpu['total']:.2f} ms/saga (process {cpu['process']:.2f},"
            f" postgres {cpu['postgres']:.2f}); machine busy"
            f" {bare['machine_busy_cores']:.2f} cores, {bare['others_busy_cores']:.2f} by others"
        )
    lines.append(
        f"                  ({c1['sagas']} + {c32['sagas']} sagas, 5 commits each: counted as"
        f" the service's are, {c1['db_commits_per_saga']:.2f} and"
        f" {c32['db_commits_per_saga']:.2f}; synchronous_commit {c32['synchronous_commit']})"
    )
    return lines


def sweep_lines(swept: dict, concurrency: int) -> list[str]:
    lines = [f"  sweeps (throughput at concurrency {concurrency}, short phases):"]
    for name in ("workers", "api_workers"):
        for point in swept[name]:
            lines.append(
                f"    {point['workers']} saga worker process(es), {point['api_workers']}"
                f" Gunicorn workers: {point['sagas_per_second']:.0f} sagas/s,"
                f" p50 {point['p50_ms']:.1f} ms,"
                f" CPU {service_cpu_ms(point['cpu_ms_per_saga']):.2f} ms/saga,"
                f" machine busy {point['machine_busy_cores']:.2f} cores,"
                f" {point['others_busy_cores']:.2f} by others"
            )
    return lines


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
        *bare_lines(results["bare_c1"], results["bare_c32"]),
        f"  against the bare reference (issue 9's targets; service idle commits"
        f" {results['idle_commits_per_second']:.1f}/s taken out of the quiet waits):",
        *(f"    {target['line']}" for target in results["targets"]),
    ]
    if "sweeps" in results:
        lines += sweep_lines(results["sweeps"], thr["concurrency"])
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
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="then throughput at --concurrency with 1, 2, 4 saga worker processes and with"
        " 2 to 6 Gunicorn workers (a fresh service and database each; about two minutes)",
    )
    parser.add_argument("--sweep-sagas", type=int, default=1000, help="sagas per sweep point")
    parser.add_argument("--sweep-warmup", type=int, default=200, help="warm-up per sweep point")
    return parser.parse_args()


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def service_phases(
    args: argparse.Namespace, service: Service, nginx: Nginx, workdir: Path
) -> tuple[dict, "CommitLedger"]:
    """Warm-up, then the concurrency 1 and concurrency 32 phases, each with its commits."""
    register_definition(service.port, nginx.base)
    client = Client(service.port, args.poll_ms / 1000)
    meter = service_meter(service, nginx)
    # Warm-up: imports, connections of every API worker and worker thread, caches.
    warm_up(client, range(-args.warmup_sagas, 0), args.concurrency)
    warm_up(client, range(-2 * args.warmup_sagas, -args.warmup_sagas), 1)
    ledger = CommitLedger()
    results = {"load_before": load()}
    results["latency_c1"] = measure(client, meter, args.latency_sagas, 1, 0)
    ledger.after(results["latency_c1"])
    profiler = Profiler(workdir, service, 600) if args.profile else None
    results["throughput"] = measure(
        client, meter, args.throughput_sagas, args.concurrency, 100_000, profiler
    )
    ledger.after(results["throughput"])
    return results, ledger


def reference_phases(args: argparse.Namespace, nginx: Nginx) -> dict:
    """The floor and the bare reference, while the service idles."""
    recreate_database(BARE_DB_NAME)
    return {
        "floor": Floor(nginx.port).measure(args.latency_sagas, args.concurrency, nginx),
        "bare_c1": bare_reference(nginx, 1, args.latency_sagas, 100),
        "bare_c32": bare_reference(
            nginx, args.concurrency, args.throughput_sagas, args.warmup_sagas
        ),
    }


def add_ratios(results: dict, idle_per_second: float) -> None:
    results["idle_commits_per_second"] = idle_per_second
    for phase in ("latency_c1", "throughput"):
        results[phase]["db_commits_per_saga"] = commits_per_saga(results[phase], idle_per_second)
    found = targets(
        latency=results["latency_c1"],
        throughput=results["throughput"],
        bare_c1=results["bare_c1"],
        bare_c32=results["bare_c32"],
    )
    results["targets"] = [
        {"label": t.label, "value": t.value, "goal": t.goal, "met": t.met, "line": t.line()}
        for t in found
    ]


def run(args: argparse.Namespace, workdir: Path) -> dict:
    nginx = Nginx(workdir)
    recreate_database()
    redis.Redis(host="127.0.0.1", db=args.redis_db).flushdb()
    service = Service(service_env(args), workdir, args)
    results = {"machine": machine(), "config": vars(args)}
    try:
        nginx.start()
        service.start()
        phases, ledger = service_phases(args, service, nginx, workdir)
        results.update(phases)
        results.update(reference_phases(args, nginx))
        add_ratios(results, ledger.idle_rate())
        results["load_after"] = load()
        if not service.alive():
            raise RuntimeError("a service process died during the bench")
        service.stop()
        if args.sweep:
            results["sweeps"] = sweeps(args, workdir, nginx)
    finally:
        service.stop()
        nginx.stop()
    return results


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    results = run(args, workdir)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    text = report(results)
    print("\n" + text)
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
