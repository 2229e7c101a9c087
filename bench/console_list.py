"""How fast the console's sagas list answers with many sagas in the table.

    .venv/bin/python bench/console_list.py [--sagas 100000] [--runs 30] [--sqlite]

Creates a throwaway database (PostgreSQL `saga_console_bench` on 127.0.0.1, dropped at
the end; or a SQLite file with --sqlite), migrates it, bulk-inserts the sagas (spread
over 30 days, every status, three definitions), signs in through the console's own form
with Django's test client and times the list pages: the first page, a status tab, a
definition, a deep page (keyset cursor in the middle of the table), a search by id. Prints
the median and p95 in ms of each (the whole request: middleware, session, rate limit,
queries, template). A benchmark, not a test: the box is shared, compare runs made back to
back.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "saga_console_bench"
KEY = "console-bench-internal-key"
STATUSES = ["completed"] * 80 + ["compensated"] * 8 + ["running"] * 5 + ["pending"] * 3
STATUSES += ["failed", "cancelled", "compensating", "cancelled"]


def configure(sqlite: bool, reuse: bool = False) -> None:
    os.environ.update(
        DEBUG="False",
        LOG_FILE="",
        LOG_LEVEL="WARNING",
        SECRET_KEY="console-bench-secret-key",
        SAGA_API_KEY="console-bench-client-key",
        INTERNAL_API_KEY=KEY,
        RATE_LIMIT_MAX_REQUESTS="1000000",
        REDIS_HOST="",
        PROMETHEUS_MULTIPROC_DIR="",
        SECURE_COOKIES="False",
        DJANGO_SETTINGS_MODULE="saga_orchestrator.settings",
    )
    if sqlite:
        os.environ.update(DB_HOST="", SQLITE_PATH=tempfile.mktemp(suffix=".sqlite3"))
    else:
        os.environ.update(DB_HOST="127.0.0.1", DB_USER="postgres", DB_NAME=DB_NAME)
        if not (reuse and _postgres_has(DB_NAME)):
            _postgres(f"DROP DATABASE IF EXISTS {DB_NAME}", f"CREATE DATABASE {DB_NAME}")


def _postgres(*statements: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


def _postgres_has(name: str) -> bool:
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        found = cursor.fetchone() is not None
    connection.close()
    return found


def fill(count: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from sagas.models import SagaDefinition, SagaInstance

    call_command("migrate", verbosity=0)
    if SagaInstance.objects.count() == count:
        return  # --keep: filled by an earlier run
    definitions = [
        SagaDefinition.objects.create(
            name=name, version=1, timeout_seconds=300, steps=[], content_hash="0" * 64
        )
        for name in ("order_checkout", "refund", "signup")
    ]
    now = datetime.now(UTC)
    started = time.monotonic()
    batch = []
    for i in range(count):
        status = STATUSES[i % len(STATUSES)]
        created = now - timedelta(seconds=(count - i) * 30 * 86400 / count)
        definition = definitions[i % 3]
        batch.append(
            SagaInstance(
                id=uuid.uuid4(),
                definition=definition,
                definition_name=definition.name,
                definition_version=1,
                status=status,
                input={"order_id": f"A-{i}", "items": [{"sku": "book", "qty": 1}]},
                steps=[{"name": "reserve", "status": "succeeded", "attempts": 1}],
                idempotency_key=f"order-{i}",
                finished_at=created + timedelta(seconds=2) if status != "running" else None,
            )
        )
        if len(batch) == 5000:
            _insert(batch)
            batch = []
    _insert(batch)
    # auto_now_add ignores the value given: set the spread of creation times afterwards.
    _spread_created_at(now, count)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    print(f"inserted {count} sagas in {time.monotonic() - started:.1f} s")


def _insert(batch: list) -> None:
    from sagas.models import SagaInstance

    if batch:
        SagaInstance.objects.bulk_create(batch)


def _spread_created_at(now: datetime, count: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE sagas_sagainstance SET created_at = %s - (random() * interval '30 days')",
                [now],
            )
        else:
            cursor.execute(
                "UPDATE sagas_sagainstance SET created_at = "
                "datetime(%s, '-' || (abs(random()) % 2592000) || ' seconds')",
                [now.strftime("%Y-%m-%d %H:%M:%S")],
            )


def signed_in_client():
    import re

    from django.test import Client

    client = Client()
    page = client.get("/console/sign-in/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post("/console/sign-in/", {"key": KEY, "csrfmiddlewaretoken": token})
    assert response.status_code == 302, response.status_code
    return client


def cases() -> dict[str, str]:
    from console.listing import cursor_of
    from sagas.models import SagaInstance

    ordered = SagaInstance.objects.order_by("-created_at", "-id")
    middle = ordered[SagaInstance.objects.count() // 2]
    some = ordered[123]
    return {
        "first page": "/console/",
        "status=failed": "/console/?status=failed",
        "definition=refund": "/console/?definition=refund",
        "deep page (keyset)": "/console/?before=" + cursor_of(middle).replace("+", "%2B"),
        "search by id": f"/console/?q={some.id}",
        "search by Idempotency-Key": "/console/?q=order-4242",
    }


def timed(client, path: str, runs: int) -> list[float]:
    client.get(path)  # warm: templates, plans
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument(
        "--keep", action="store_true", help="keep the PostgreSQL database, and reuse it"
    )
    args = parser.parse_args()
    configure(args.sqlite, reuse=args.keep)
    import django

    django.setup()
    try:
        fill(args.sagas)
        client = signed_in_client()
        backend = "SQLite" if args.sqlite else "PostgreSQL"
        print(f"{backend}, {args.sagas} sagas, {args.runs} runs each: median / p95 ms")
        for name, path in cases().items():
            times = sorted(timed(client, path, args.runs))
            p95 = times[max(0, int(len(times) * 0.95) - 1)]
            print(f"  {name:28} {statistics.median(times):7.1f} {p95:7.1f}")
    finally:
        from django.db import connections

        connections.close_all()
        if args.sqlite:
            Path(os.environ["SQLITE_PATH"]).unlink(missing_ok=True)
        elif not args.keep:
            _postgres(f"DROP DATABASE IF EXISTS {DB_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
