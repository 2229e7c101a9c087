"""The bare reference: the leanest durable orchestrator we can write in Python for the
bench's 3-step saga, measured in the same run on the same participants (nginx).

Per saga: INSERT the saga row; per step one keep-alive HTTP call (standard-library
http.client) and one committed UPDATE recording its response; a final UPDATE. One thread
per saga in flight, each with its own connection to PostgreSQL (psycopg2, autocommit: each
statement is one durable transaction, synchronous_commit as the server has it) and to
nginx. No API, no auth, no logging, no retries, no leases.

    python bench/bare.py --port 8080 --concurrency 32 --sagas 3000

prints one JSON object: p50/p99 created→finished (both timestamps taken by PostgreSQL),
completed sagas/s over the first created → last finished window, and CPU ms per saga of
this process and of its PostgreSQL backends (from /proc), warm-up excluded.
"""

import argparse
import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
from figures import percentile

APP_NAME = "saga-bench-bare"
TICKS = os.sysconf("SC_CLK_TCK")
SCHEMA = """
CREATE TABLE IF NOT EXISTS saga (
    id bigserial PRIMARY KEY,
    status text NOT NULL,
    input jsonb NOT NULL,
    step integer NOT NULL DEFAULT 0,
    results jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
)
"""
STEPS = (("reserve", "/reserve"), ("charge", "/charge"), ("ship", "/ship"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime stime


class Lane:
    """One thread's connections: one to PostgreSQL, one keep-alive to the participants."""

    def __init__(self, dbname: str, port: int):
        self.db = psycopg2.connect(
            host="127.0.0.1", user="postgres", dbname=dbname, application_name=APP_NAME
        )
        self.db.autocommit = True
        self.cur = self.db.cursor()
        self.cur.execute("SELECT pg_backend_pid()")
        self.backend_pid = self.cur.fetchone()[0]
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def call(self, path: str, body: dict, key: str) -> bytes:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        self.http.request("POST", path, json.dumps(body).encode(), headers)
        response = self.http.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"participant answered {response.status}")
        return answer

    def run_saga(self, n: int) -> int:
        saga_input = {"order_id": f"o-{n}", "amount": n}
        self.cur.execute(
            "INSERT INTO saga (status, input) VALUES ('running', %s) RETURNING id",
            (json.dumps(saga_input),),
        )
        saga_id = self.cur.fetchone()[0]
        bodies = {"reserve": {"order": saga_input["order_id"]}, "charge": {"amount": n}}
        for number, (name, path) in enumerate(STEPS, start=1):
            answer = self.call(path, bodies.get(name, {}), f"{saga_id}:{name}")
            self.cur.execute(
                "UPDATE saga SET step = %s, results = results || jsonb_build_object(%s, %s::jsonb)"
                " WHERE id = %s",
                (number, name, answer.decode(), saga_id),
            )
        self.cur.execute(
            "UPDATE saga SET status = 'completed', finished_at = clock_timestamp() WHERE id = %s",
            (saga_id,),
        )
        return saga_id

    def close(self) -> None:
        self.http.close()
        self.db.close()


class Bare:
    def __init__(self, dbname: str, port: int, concurrency: int):
        self.dbname = dbname
        self.lanes = [Lane(dbname, port) for _ in range(concurrency)]
        self.free = list(self.lanes)
        self.lock = threading.Lock()

    def run_one(self, n: int) -> int:
        with self.lock:
            lane = self.free.pop()
        try:
            return lane.run_saga(n)
        finally:
            with self.lock:
                self.free.append(lane)

    def run_many(self, numbers: range) -> list[int]:
        if len(self.lanes) == 1:
            return [self.lanes[0].run_saga(n) for n in numbers]
        with ThreadPoolExecutor(len(self.lanes)) as pool:
            return list(pool.map(self.run_one, numbers))

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of this process and of its PostgreSQL backends."""
        backends = sum(cpu_seconds(lane.backend_pid) for lane in self.lanes)
        return time.process_time(), backends

    def figures(self, ids: list[int]) -> dict:
        cur = self.lanes[0].cur
        cur.execute(
            "SELECT EXTRACT(EPOCH FROM finished_at - created_at) * 1000,"
            " EXTRACT(EPOCH FROM created_at), EXTRACT(EPOCH FROM finished_at)"
            " FROM saga WHERE id = ANY(%s) AND status = 'completed'",
            (ids,),
        )
        rows = cur.fetchall()
        durations = sorted(float(ms) for ms, _, _ in rows)
        window = max(float(r[2]) for r in rows) - min(float(r[1]) for r in rows)
        cur.execute("SHOW synchronous_commit")
        return {
            "sagas": len(rows),
            "p50_ms": percentile(durations, 50),
            "p99_ms": percentile(durations, 99),
            "sagas_per_second": len(rows) / window,
            "synchronous_commit": cur.fetchone()[0],
        }

    def measure(self, count: int, warmup: int) -> dict:
        self.run_many(range(-warmup, 0))
        process_before, backends_before = self.cpu()
        ids = self.run_many(range(count))
        process_after, backends_after = self.cpu()
        result = self.figures(ids)
        # All of it, warm-up and start included: the bench tells the others' share with it.
        result["cpu_seconds_all"] = process_after + backends_after
        process = (process_after - process_before) * 1000 / count
        backends = (backends_after - backends_before) * 1000 / count
        result["concurrency"] = len(self.lanes)
        # Transactions besides the sagas' own 5 (the bench checks its commit count with
        # them): each connection's start counts one, then the schema, one pg_backend_pid()
        # per lane and the two reads of the figures.
        result["sagas_run"] = count + warmup
        result["other_transactions"] = 2 + 2 * len(self.lanes) + 2
        result["cpu_ms_per_saga"] = {
            "process": process,
            "postgres": backends,
            "total": process + backends,
        }
        return result

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()


def schema_create(dbname: str) -> None:
    conn = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=dbname)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(SCHEMA)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the participants (nginx)")
    parser.add_argument("--dbname", default="saga_bench_bare")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--sagas", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    schema_create(args.dbname)
    bare = Bare(args.dbname, args.port, args.concurrency)
    try:
        print(json.dumps(bare.measure(args.sagas, args.warmup)))
    finally:
        bare.close()


if __name__ == "__main__":
    main()
