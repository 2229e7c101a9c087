"""`make soak`: a bounded chaos soak of the whole service, with invariant checks.

    make soak                                   # ~1,000 sagas, a few minutes
    SOAK_SAGAS=200 SOAK_SEED=7 make soak        # smaller, another seed
    make soak SOAK_ARGS="--sagas 5000 --rate 10 --no-chaos --keep-db"
    .venv/bin/python -m bench.soak --help       # every option

It needs the PostgreSQL the suite uses (DB_HOST/DB_PORT/DB_USER, default 127.0.0.1:5432,
user postgres) and `redis-server` on the PATH. It creates its own database (`--db-name`,
default `saga_soak`, dropped at the end unless `--keep-db`) and starts, as real processes:
a throwaway redis-server on a free port (the shared Redis is never touched), Gunicorn with
gunicorn.conf.py (2 workers) and two `manage.py run_saga_worker`, plus, in this process,
the participants: one HTTP server whose every path is a step endpoint, answering each
call at random from the seed (2xx, 5xx, 4xx incl. 409, 408/425/429, slow past the 1 s
call timeout, a body dripped a byte at a time) and recording every call it receives.

While sagas of four definitions (3-4 steps, some steps without compensation, short retry
delays) are started at `--rate` per second — some starts sent twice with one
Idempotency-Key, some sagas cancelled mid-way — a seeded chaos thread kills a saga worker
(`kill -9`, a new one starts), a Gunicorn worker (`kill -9`; the arbiter replaces it) or
the redis-server (`kill -9`, restarted on the same port a moment later). Then it waits
(bounded) for every saga to be terminal, reads each through the API (`/api/sagas/{id}/`,
`/logs/`) and checks the invariants in bench/soak_checks.py against what the participants
recorded. It prints the figures, each violated invariant with examples, and last a line
`N passed, M failed` (invariants); the exit status is 1 when any failed. Every wait is
bounded and every process it started is killed on the way out, Ctrl-C included. The
service's output is kept in `<workdir>/service.log` (its path is printed first).

The invariants: nothing lost (every 202/200 start is a saga); every saga terminal; one
start key, one saga; compensations strictly backwards, one at a time; compensated exactly
the steps that took or may have taken effect (2xx, 5xx, cut by a timeout or a crash) and
no other; no action after the first compensation; never two calls with one
Idempotency-Key open at once; participant calls <= attempts + interruptions; no call after
`finished_at`; the final status consistent with the calls (`completed` => every action
answered 2xx; an accepted cancel => `cancelled`); every call bounded by its timeout; a
crash is not an attempt (an interrupted call is re-sent as the same attempt); an
accepted cancel acts at once (no retry wait, e.g. a Retry-After, is waited out).
"""

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.soak_checks import MAX_INTERRUPTIONS, TERMINAL, SagaFacts, attach_calls, run_all
from bench.soak_participant import ParticipantServer
from bench.soak_processes import Service, ThrowawayRedis, database_recreate, db_connect

API_KEY = "soak-internal-key"
SAGA_WORKERS = 2
LEASE_SECONDS = 5.0  # well above a starved lease keeper's pauses on a busy 2-core box


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    env = os.environ.get
    parser.add_argument("--sagas", type=int, default=int(env("SOAK_SAGAS") or 1000))
    parser.add_argument("--rate", type=float, default=float(env("SOAK_RATE") or 6.0))
    parser.add_argument("--seed", type=int, default=int(env("SOAK_SEED") or 1))
    parser.add_argument("--chaos-every", type=float, default=4.0, help="mean seconds")
    parser.add_argument("--no-chaos", action="store_true")
    parser.add_argument("--settle-timeout", type=float, default=180.0)
    parser.add_argument("--call-timeout", type=float, default=1.0)
    parser.add_argument("--retry-after", type=float, default=30.0, help="of 'later' answers")
    parser.add_argument("--cancel-fraction", type=float, default=0.15)
    parser.add_argument("--duplicate-fraction", type=float, default=0.1)
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=6, help="threads per saga worker")
    parser.add_argument("--db-name", default=env("SOAK_DB_NAME") or "saga_soak")
    parser.add_argument("--keep-db", action="store_true", help="keep the database at the end")
    parser.add_argument("--examples", type=int, default=5, help="examples per invariant")
    return parser.parse_args(argv)


def service_env(args, redis_port: int) -> dict:
    env = dict(os.environ)
    env.update(
        DEBUG="False",
        DB_HOST=env.get("DB_HOST") or "127.0.0.1",
        DB_USER=env.get("DB_USER") or "postgres",
        DB_NAME=args.db_name,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(redis_port),
        REDIS_DB="0",
        SECRET_KEY="soak-secret-key-not-for-production",
        SAGA_API_KEY="soak-client-key",
        INTERNAL_API_KEY=API_KEY,
        RATE_LIMIT_MAX_REQUESTS="1000000000",
        LOG_LEVEL="WARNING",
        LOG_FILE="",
        # A killed worker's sagas are taken over quickly; a poll for the safety net.
        SAGA_LEASE_SECONDS=str(LEASE_SECONDS),
        SAGA_WORKER_POLL_SECONDS="0.2",
        SAGA_WORKER_HEARTBEAT_SECONDS="1",
        SAGA_COMPENSATION_RETRY_ATTEMPTS="3",
        SAGA_MAX_INTERRUPTIONS=str(MAX_INTERRUPTIONS),  # what the checks assume
        GUNICORN_MAX_REQUESTS="0",
    )
    env.pop("SAGA_ALLOWED_HOSTS", None)
    return env


# --- definitions -------------------------------------------------------------------------

# name -> (max_attempts, [(step, has a compensation)])
DEFINITIONS = {
    "soak_checkout": (3, [("reserve", True), ("charge", True), ("ship", False)]),
    "soak_four": (2, [("hold", True), ("notify", False), ("book", True), ("bill", True)]),
    "soak_once": (1, [("lock", True), ("debit", True), ("credit", True)]),
    "soak_patient": (4, [("draft", True), ("approve", True), ("publish", True), ("log", False)]),
}


def definition_body(name: str, base: str, timeout: float) -> dict:
    attempts, steps = DEFINITIONS[name]
    retry = {"max_attempts": attempts, "delay_seconds": 0.05, "backoff_multiplier": 2}
    retry["max_delay_seconds"] = 0.4

    def call(method: str, path: str) -> dict:
        url = f"{base}/{name}/{path}"
        return {"method": method, "url": url, "timeout_seconds": timeout}

    body = []
    for step, compensable in steps:
        entry = {"name": step, "retry": retry, "action": call("POST", step)}
        entry["action"]["body"] = {"order": "${input.order}"}
        if compensable:
            entry["compensation"] = call("DELETE", f"{step}/${{saga.id}}")
        body.append(entry)
    return {"name": name, "timeout_seconds": 600, "steps": body}


# --- the API client ------------------------------------------------------------------------


class Api:
    """requests with bounded retries: a Gunicorn worker killed mid-request is a connection
    error or a 5xx, and the same request is sent again (starts with the same key)."""

    def __init__(self, base: str):
        self.base = base
        self.local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            self.local.session.trust_env = False
            self.local.session.headers["X-API-Key"] = API_KEY
        return self.local.session

    def send(self, method: str, path: str, *, tries: int = 8, **kwargs):
        """(final response or None, whether any try failed without an answer)."""
        errors = False
        for attempt in range(tries):
            try:
                response = self._session().request(method, self.base + path, timeout=15, **kwargs)
            except requests.RequestException:
                errors = True
                time.sleep(0.2 * (attempt + 1))
                continue
            if response.status_code < 500:
                return response, errors
            errors = True
            time.sleep(0.2 * (attempt + 1))
        return None, errors


class Load:
    """Starts sagas (some twice with one key), cancels some; remembers every answer."""

    def __init__(self, api: Api, args):
        self.api = api
        self.args = args
        self.lock = threading.Lock()
        self.starts: dict[str, list[str]] = {}  # key -> saga ids answered
        self.unanswered: list[str] = []
        self.cancels: dict[str, tuple[str, float]] = {}  # id -> (verdict, answered at)
        self.saga_definition: dict[str, str] = {}

    def one(self, index: int) -> None:
        rng = random.Random(f"{self.args.seed}:load:{index}")
        definition = rng.choice(sorted(DEFINITIONS))
        key = f"soak-{self.args.seed}-{index}-{rng.getrandbits(32):08x}"
        body = {"definition": definition, "input": {"order": index}}
        saga_id = self._start(key, body)
        if saga_id and rng.random() < self.args.duplicate_fraction:
            time.sleep(rng.uniform(0, 0.5))
            self._start(key, body)
        if saga_id and rng.random() < self.args.cancel_fraction:
            time.sleep(rng.uniform(0.05, 3.0))
            self._cancel(saga_id)

    def _start(self, key: str, body: dict) -> str | None:
        response, _ = self.api.send(
            "POST", "/api/sagas/", json=body, headers={"Idempotency-Key": key}
        )
        if response is None or response.status_code not in (200, 202):
            with self.lock:
                self.unanswered.append(f"{key}: {response and response.status_code}")
            return None
        saga_id = response.json()["id"]
        with self.lock:
            self.starts.setdefault(key, []).append(saga_id)
            self.saga_definition[saga_id] = body["definition"]
        return saga_id

    def _cancel(self, saga_id: str) -> None:
        response, errors = self.api.send("POST", f"/api/sagas/{saga_id}/cancel/")
        status = response.status_code if response is not None else None
        verdict = "unknown"
        if not errors and status == 202:
            verdict = "accepted"
        elif not errors and status == 409:
            verdict = "refused"
        with self.lock:
            self.cancels[saga_id] = (verdict, time.time())


# --- chaos ---------------------------------------------------------------------------------


class Chaos(threading.Thread):
    """Every ~`every` s (seeded): kill -9 a saga worker (and start another), a Gunicorn
    worker (the arbiter replaces it), or the redis-server (restarted on its port)."""

    def __init__(self, service: Service, redis: ThrowawayRedis, seed: int, every: float):
        super().__init__(name="chaos", daemon=True)
        self.service, self.redis, self.every = service, redis, every
        self.rng = random.Random(f"{seed}:chaos")
        self.stopping = threading.Event()
        self.kills: Counter = Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        actions = {"saga worker": 3, "gunicorn worker": 2, "redis": 1}
        while not self.stopping.wait(self._pause()):
            what = self.rng.choices(list(actions), list(actions.values()))[0]
            try:
                self._strike(what)
                self.kills[what] += 1
            except Exception as exc:  # noqa: BLE001 - reported, never kills the soak
                self.errors.append(f"{what}: {exc}")

    def _pause(self) -> float:
        """Seconds to the next strike: exponential around `every`, at least 0.5 s."""
        return min(max(self.rng.expovariate(1 / self.every), 0.5), 3 * self.every)

    def _strike(self, what: str) -> None:
        if what == "saga worker":
            self.service.worker_kill(self.rng.randrange(len(self.service.workers)))
            self.service.worker_start()
        elif what == "gunicorn worker":
            pids = self.service.api_worker_pids()
            if pids:
                os.kill(self.rng.choice(sorted(pids)), signal.SIGKILL)
        else:
            self.redis.kill()
            time.sleep(self.rng.uniform(0.5, 2.0))
            self.redis.start()


# --- the run ------------------------------------------------------------------------------


def register_definitions(api: Api, base: str, timeout: float) -> None:
    for name in DEFINITIONS:
        body = definition_body(name, base, timeout)
        response, _ = api.send("POST", "/api/saga-definitions/", json=body)
        if response is None or response.status_code not in (200, 201):
            detail = response.text[:500] if response is not None else "no answer"
            raise RuntimeError(f"definition {name} refused: {detail}")


def drive_load(load: Load, args) -> None:
    """Start `--sagas` sagas at `--rate` per second from a pool of client threads."""
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="client")
    try:
        futures = []
        for index in range(args.sagas):
            delay = started + index / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(load.one, index))
        for future in futures:
            future.result(timeout=300)
    finally:
        # Ctrl-C: starts not begun are dropped; those under way end within their retries.
        pool.shutdown(wait=True, cancel_futures=True)


def wait_terminal(db_name: str, ids: list[str], seconds: float) -> int:
    """Poll PostgreSQL until no saga of `ids` is left unfinished; returns how many are."""
    deadline = time.monotonic() + seconds
    conn = db_connect(db_name)
    try:
        while True:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM sagas_sagainstance"
                    " WHERE id = ANY(%s::uuid[]) AND NOT status = ANY(%s)",
                    (ids, list(TERMINAL)),
                )
                left = cur.fetchone()[0]
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(1.0)
    finally:
        conn.close()


def collect(api: Api, load: Load) -> list[SagaFacts]:
    def read(saga_id: str) -> SagaFacts:
        detail, _ = api.send("GET", f"/api/sagas/{saga_id}/")
        logs, _ = api.send("GET", f"/api/sagas/{saga_id}/logs/")
        found = detail is not None and detail.status_code == 200
        steps = DEFINITIONS[load.saga_definition[saga_id]][1]
        return SagaFacts(
            id=saga_id,
            detail=detail.json() if found else None,
            logs=logs.json() if logs is not None and logs.status_code == 200 else [],
            steps=steps,
            cancel=load.cancels.get(saga_id, (None, None))[0],
            cancel_at=load.cancels.get(saga_id, (None, None))[1],
        )

    ids = sorted({saga_id for found in load.starts.values() for saga_id in found})
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(read, ids, timeout=600))


def report(args, sagas, calls, strays, chaos, load, seconds, results) -> int:
    statuses = Counter(saga.status for saga in sagas)
    kinds = Counter(f"{c.phase}:{c.kind}" for c in calls)
    print(f"soak: seed {args.seed}, {len(sagas)} sagas in {seconds:.1f} s", end="")
    print(f" ({len(sagas) / seconds:.1f} sagas/s)")
    print("  by status:", json.dumps(dict(sorted(statuses.items(), key=str))))
    print(f"  participant calls: {len(calls)};", json.dumps(dict(sorted(kinds.items()))))
    print("  kills:", json.dumps(dict(chaos.kills)) if chaos else "none (--no-chaos)")
    if chaos and chaos.errors:
        print("  chaos errors:", chaos.errors[:5])
    cancels = Counter(verdict for verdict, _ in load.cancels.values())
    duplicates = sum(len(ids) - 1 for ids in load.starts.values())
    print(f"  cancels: {dict(cancels)}; repeated starts with one key: {duplicates}")
    print(f"  starts never answered: {len(load.unanswered)} {load.unanswered[:3]}")
    print(f"  calls naming no known saga: {len(strays)}")
    failed = {name: problems for name, problems in results.items() if problems}
    for name, problems in results.items():
        print(
            f"  [{'FAIL' if problems else 'ok'}] {name}"
            + (f": {len(problems)}" if problems else "")
        )
        for problem in problems[: args.examples]:
            print(f"      - {problem}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


class Soak:
    """The run's phases; `tear_down` undoes whatever `bring_up` got to."""

    def __init__(self, args):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="saga-soak-"))
        self.participants = ParticipantServer(args.seed, args.call_timeout, args.retry_after)
        self.redis = ThrowawayRedis()
        self.service: Service | None = None
        self.chaos: Chaos | None = None

    def bring_up(self) -> Api:
        # Said first: the report's last line stays `N passed, M failed`.
        print(f"soak: service output in {self.workdir / 'service.log'}", file=sys.stderr)
        self.participants.start()
        self.redis.start()
        database_recreate(self.args.db_name)
        env = service_env(self.args, self.redis.port)
        self.service = Service(
            env, self.workdir, api_workers=self.args.api_workers, concurrency=self.args.concurrency
        )
        self.service.migrate()
        self.service.api_start()
        for _ in range(SAGA_WORKERS):
            self.service.worker_start()
        api = Api(self.service.base_url)
        register_definitions(api, self.participants.base_url, self.args.call_timeout)
        return api

    def load_under_chaos(self, load: Load) -> None:
        if not self.args.no_chaos:
            self.chaos = Chaos(self.service, self.redis, self.args.seed, self.args.chaos_every)
            self.chaos.start()
        drive_load(load, self.args)
        self._chaos_stop()
        # Everything back for the settle: Redis up, both saga workers alive.
        if not self.redis.running():
            self.redis.start()
        self.service.workers_replace_dead(SAGA_WORKERS)

    def settle(self, load: Load) -> None:
        ids = sorted({saga_id for found in load.starts.values() for saga_id in found})
        left = wait_terminal(self.args.db_name, ids, self.args.settle_timeout)
        print(f"soak: load done; {left} sagas unfinished after the settle wait", file=sys.stderr)
        _wait_quiet(self.participants)

    def check(self, api: Api, load: Load) -> tuple[list, list, list, dict]:
        sagas = collect(api, load)
        calls = self.participants.recorder.snapshot()
        strays = attach_calls(sagas, calls)
        results = run_all(
            sagas,
            load.starts,
            calls,
            timeout=self.args.call_timeout,
            lease=LEASE_SECONDS,
            now=time.time(),
        )
        return sagas, calls, strays, results

    def _chaos_stop(self) -> None:
        if self.chaos:
            self.chaos.stopping.set()
            self.chaos.join(timeout=30)

    def tear_down(self) -> None:
        self._chaos_stop()
        if self.service:
            self.service.stop()
        self.redis.kill()
        self.participants.stop()
        if not self.args.keep_db:
            _drop_quietly(self.args.db_name)


def run(args) -> int:
    soak = Soak(args)
    try:
        api = soak.bring_up()
        load = Load(api, args)
        began = time.monotonic()
        soak.load_under_chaos(load)
        soak.settle(load)
        seconds = time.monotonic() - began
        sagas, calls, strays, results = soak.check(api, load)
        return report(args, sagas, calls, strays, soak.chaos, load, seconds, results)
    finally:
        soak.tear_down()


def _wait_quiet(participants: ParticipantServer, seconds: float = 10.0) -> None:
    """Calls still open (a caller that has not hung up yet) get a moment to end."""
    deadline = time.monotonic() + seconds
    while participants.recorder.open_count() and time.monotonic() < deadline:
        time.sleep(0.1)


def _drop_quietly(name: str) -> None:
    try:
        database_recreate(name, drop_only=True)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the result
        print(f"soak: could not drop database {name}: {exc}", file=sys.stderr)


def main(argv=None) -> int:
    args = arguments(argv)
    # Ctrl-C (even when started in the background, where SIGINT comes ignored) and
    # SIGTERM both unwind through the cleanup in `run`.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        return run(args)
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
