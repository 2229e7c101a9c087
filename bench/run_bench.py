"""`make bench`: end-to-end saga throughput and latency on this machine.

Starts, as separate processes: nginx serving fixed JSON (the participants), Gunicorn with
gunicorn.conf.py (the API) and saga workers, all against the real PostgreSQL and Redis on
127.0.0.1 (a dedicated `saga_bench` database, recreated each run). Then measures:

- latency: created→finished of 3-step sagas, one at a time (concurrency 1), p50/p99;
- throughput: completed sagas per second with 32 sagas in flight, and their p50/p99;
- CPU milliseconds per saga, summed over the API and worker processes;
- the floor: the same three HTTP calls made directly to nginx, sequentially and 32-wide.

Timestamps come from the saga rows themselves (created_at → finished_at), so the client's
polling does not count against the service.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
DB_NAME = "saga_bench"
API_KEY = "bench-internal-key"
TERMINAL = ("completed", "compensated", "cancelled", "failed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds}s")


def recreate_database() -> None:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DB_NAME}")
    conn.close()


def service_env(redis_db: int) -> dict:
    env = dict(os.environ)
    env.update(
        DEBUG="False",
        DB_HOST="127.0.0.1",
        DB_USER="postgres",
        DB_NAME=DB_NAME,
        REDIS_HOST="127.0.0.1",
        REDIS_DB=str(redis_db),
        SECRET_KEY="bench-secret-key-not-for-production",
        SAGA_API_KEY="bench-client-key",
        INTERNAL_API_KEY=API_KEY,
        RATE_LIMIT_MAX_REQUESTS="1000000000",
        LOG_LEVEL="WARNING",
        LOG_FILE="",
    )
    return env


class Nginx:
    """nginx answering every method on every path with a small fixed JSON body."""

    CONFIG = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    keepalive_requests 100000;
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
        self.process = None

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen([nginx, "-c", str(self.config)], stderr=subprocess.DEVNULL)
        wait_for(f"http://127.0.0.1:{self.port}/")

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
    """Gunicorn (API) and saga workers as processes; their CPU time read from /proc."""

    def __init__(self, env: dict, workdir: Path, api_workers: int, workers: int, concurrency: int):
        self.env = env
        self.port = free_port()
        self.env["GUNICORN_BIND"] = f"127.0.0.1:{self.port}"
        self.env["GUNICORN_WORKERS"] = str(api_workers)
        self.env["GUNICORN_MAX_REQUESTS"] = "0"  # no recycling: CPU of dead workers is lost
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prom")
        (workdir / "prom").mkdir(exist_ok=True)
        self.workers = workers
        self.concurrency = concurrency
        self.processes: list[subprocess.Popen] = []
        self.log = open(workdir / "service.log", "w")  # noqa: SIM115

    def start(self) -> None:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=self.env, check=True
        )
        self._spawn([PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"])
        for _ in range(self.workers):
            self._spawn(
                [PYTHON, "manage.py", "run_saga_worker", "--concurrency", str(self.concurrency)]
            )
        wait_for(f"{self.base}/health/")

    def _spawn(self, argv: list[str]) -> None:
        self.processes.append(
            subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                stdout=self.log,
                stderr=self.log,
                start_new_session=True,
            )
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User+system CPU of every service process and its children (Gunicorn workers)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self._tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    def _tree(self) -> list[int]:
        pids = [p.pid for p in self.processes]
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    ppid = int(Path(proc, "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid in pids[: len(self.processes)]:
                    pids.append(int(proc.name))
        return pids

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.log.close()


class Client:
    """Starts sagas over HTTP; waits for them by reading the saga row's status."""

    def __init__(self, base: str):
        self.base = base
        self.local = threading.local()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            self.local.session.headers["X-API-Key"] = API_KEY
            self.local.db = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DB_NAME)
            self.local.db.autocommit = True
        return self.local.session

    def start(self, n: int) -> str:
        body = {"definition": "bench_checkout", "input": {"order_id": f"o-{n}", "amount": n}}
        response = self.session().post(f"{self.base}/api/sagas/", json=body, timeout=30)
        response.raise_for_status()
        return response.json()["id"]

    def wait(self, saga_id: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        with self.local.db.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT status FROM sagas_sagainstance WHERE id = %s", (saga_id,))
                status = cur.fetchone()[0]
                if status in TERMINAL:
                    return status
                time.sleep(0.0005)
        raise RuntimeError(f"saga {saga_id} did not finish within {timeout}s")

    def run_one(self, n: int) -> str:
        saga_id = self.start(n)
        self.wait(saga_id)
        return saga_id


def durations_ms(saga_ids: list[str]) -> tuple[list[float], dict]:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=DB_NAME)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT status, EXTRACT(EPOCH FROM finished_at - created_at) * 1000 "
            "FROM sagas_sagainstance WHERE id = ANY(%s::uuid[])",
            (saga_ids,),
        )
        rows = cur.fetchall()
    conn.close()
    statuses: dict[str, int] = {}
    for status, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    return sorted(float(ms) for _, ms in rows), statuses


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))
    return sorted(values)[index]


def measure_latency(client: Client, count: int) -> dict:
    ids = [client.run_one(n) for n in range(count)]
    values, statuses = durations_ms(ids)
    return {
        "sagas": count,
        "statuses": statuses,
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
    }


def measure_throughput(client: Client, service: Service, count: int, concurrency: int) -> dict:
    cpu_before = service.cpu_seconds()
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        ids = list(pool.map(client.run_one, range(10_000, 10_000 + count)))
    elapsed = time.monotonic() - started
    cpu = service.cpu_seconds() - cpu_before
    values, statuses = durations_ms(ids)
    return {
        "sagas": count,
        "concurrency": concurrency,
        "statuses": statuses,
        "sagas_per_second": count / elapsed,
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "cpu_ms_per_saga": cpu * 1000 / count,
    }


def measure_floor(base: str, count: int, concurrency: int) -> dict:
    """The three participant calls of one saga, made directly: the best any engine can do."""
    local = threading.local()

    def three_calls(n: int) -> float:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        begin = time.perf_counter()
        local.session.post(f"{base}/reserve", json={"order": n}, timeout=5).json()
        local.session.post(f"{base}/charge", json={"amount": n}, timeout=5).json()
        local.session.post(f"{base}/ship", json={}, timeout=5).json()
        return (time.perf_counter() - begin) * 1000

    sequential = [three_calls(n) for n in range(count)]
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(three_calls, range(count)))
    elapsed = time.monotonic() - started
    return {
        "p50_ms_sequential": percentile(sequential, 50),
        "p99_ms_sequential": percentile(sequential, 99),
        "sets_per_second_at_concurrency": count / elapsed,
    }


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def report(results: dict) -> None:
    lat, thr, floor = results["latency_c1"], results["throughput_c32"], results["floor"]
    print(f"\nSaga Orchestrator benchmark — {results['machine']}")
    print(f"  config: {results['config']}")
    print(
        f"  concurrency 1 : p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms"
        f"  ({lat['statuses']})"
    )
    print(
        f"  concurrency {thr['concurrency']}: {thr['sagas_per_second']:.0f} sagas/s, "
        f"p50 {thr['p50_ms']:.1f} ms, p99 {thr['p99_ms']:.1f} ms, "
        f"CPU {thr['cpu_ms_per_saga']:.1f} ms/saga  ({thr['statuses']})"
    )
    print(
        f"  floor (3 direct calls): p50 {floor['p50_ms_sequential']:.2f} ms sequential, "
        f"{floor['sets_per_second_at_concurrency']:.0f} sets/s at concurrency {thr['concurrency']}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-sagas", type=int, default=200)
    parser.add_argument("--throughput-sagas", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="saga worker processes")
    parser.add_argument("--worker-concurrency", type=int, default=16, help="threads per worker")
    parser.add_argument("--redis-db", type=int, default=9)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="saga-bench-"))
    nginx = Nginx(workdir)
    recreate_database()
    service = Service(
        service_env(args.redis_db), workdir, args.api_workers, args.workers, args.worker_concurrency
    )
    try:
        nginx.start()
        service.start()
        answer = requests.post(
            f"{service.base}/api/saga-definitions/",
            json=definition(nginx.base),
            headers={"X-API-Key": API_KEY},
            timeout=10,
        )
        answer.raise_for_status()
        client = Client(service.base)
        for n in range(20):  # warm-up: connections, imports, caches
            client.run_one(-n - 1)
        results = {
            "machine": machine(),
            "config": {k: v for k, v in vars(args).items() if k != "redis_db"},
            "latency_c1": measure_latency(client, args.latency_sagas),
            "throughput_c32": measure_throughput(
                client, service, args.throughput_sagas, args.concurrency
            ),
            "floor": measure_floor(nginx.base, args.latency_sagas, args.concurrency),
        }
    finally:
        service.stop()
        if nginx.process:
            nginx.process.terminate()
            nginx.process.wait(timeout=10)
    report(results)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(f"\nlogs: {workdir}/service.log; figures: bench/results/latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
