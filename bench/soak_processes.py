"""The real processes of the soak: a database of its own on the shared PostgreSQL, a
throwaway redis-server on a free port, Gunicorn and saga workers — each in its own process
group so that a kill reaches all of it and cleanup never touches anything else."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {seconds:g} s")
        time.sleep(0.05)


def db_connect(dbname: str):
    conn = psycopg2.connect(
        host=os.environ.get("DB_HOST") or "127.0.0.1",
        port=os.environ.get("DB_PORT") or 5432,
        user=os.environ.get("DB_USER") or "postgres",
        password=os.environ.get("DB_PASSWORD") or None,
        dbname=dbname,
        connect_timeout=10,
    )
    conn.autocommit = True
    return conn


def database_recreate(name: str, *, drop_only: bool = False) -> None:
    conn = db_connect("postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if not drop_only:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class ThrowawayRedis:
    """redis-server on its own port, no persistence; kill -9 and restart on the same port."""

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port)]
            + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _answers_ping(self.port), 10, "redis-server answering PING")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def running(self) -> bool:
        return bool(self.process) and self.process.poll() is None


def _group_kill(process: subprocess.Popen, signum: int = signal.SIGKILL) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def children_of(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(stat[1]) == pid:
            found.append(int(proc.name))
    return found


class Service:
    """Gunicorn (the API) and the saga workers, logging into one file of the work dir."""

    def __init__(self, env: dict, workdir: Path, *, api_workers: int, concurrency: int):
        self.env = dict(env)
        self.port = free_port()
        self.env["GUNICORN_BIND"] = f"127.0.0.1:{self.port}"
        self.env["GUNICORN_WORKERS"] = str(api_workers)
        self.env["PROMETHEUS_MULTIPROC_DIR"] = str(workdir / "prometheus")
        (workdir / "prometheus").mkdir(exist_ok=True)
        self.concurrency = concurrency
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.log = (workdir / "service.log").open("ab")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def migrate(self) -> None:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=180,
        )

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log, start_new_session=True
        )

    def api_start(self) -> None:
        argv = [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "saga_orchestrator.wsgi"]
        self.api = self._spawn(argv)
        wait_for(self._api_answers, START_TIMEOUT, "Gunicorn answering /health/")

    def _api_answers(self) -> bool:
        if self.api.poll() is not None:
            raise RuntimeError("Gunicorn exited at start-up (see service.log)")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"GET /health/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return b" 200 " in sock.recv(64)
        except OSError:
            return False

    def api_worker_pids(self) -> list[int]:
        return children_of(self.api.pid) if self.api else []

    def worker_start(self) -> None:
        argv = [PYTHON, "manage.py", "run_saga_worker", "--concurrency", str(self.concurrency)]
        self.workers.append(self._spawn(argv + ["--grace-seconds", "5"]))

    def worker_kill(self, index: int) -> None:
        _group_kill(self.workers.pop(index))

    def workers_replace_dead(self, count: int) -> int:
        dead = [w for w in self.workers if w.poll() is not None]
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < count:
            self.worker_start()
        return len(dead)

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None:
                _group_kill(process, signal.SIGKILL)
        self.workers = []
        self.log.close()
