"""The webhook outbox (DESIGN §9.5): events written by the statement or transaction that
writes the change they report, then claimed and settled by the delivery loop
(engine/delivery.py).

    outbox_rows(events, saga, notify)      history events → outbox rows (engine/webhooks.py)
    outbox_sql / outbox_params             PostgreSQL: a part of a data-modifying statement
    outbox_insert(saga_id, rows, now)      both databases: inserts in the caller's transaction
    outbox_claim(token, now, lease)        the next deliverable event, leased
    outbox_settle(claim, …)                delivered, due again later, or dead (fenced)
    outbox_redeliver(event_id, now)        dead or delivered → pending, due now

Order per saga: only a saga's oldest `pending` event may be claimed, so a later one waits
until the earlier one is delivered or dead. On PostgreSQL the claim skips rows another
worker has locked (FOR UPDATE SKIP LOCKED); on SQLite, one writer at a time, a candidate is
read, then claimed by an UPDATE whose WHERE re-checks the row (a compare-and-set). A claim
is a lease: a worker killed mid-delivery leaves an event another worker delivers once the
lease expired.
"""

# ruff: noqa: S608

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder

from sagas.engine.store import dialect
from sagas.engine.store.history import recordset_insert
from sagas.engine.webhooks import Notify, SagaFacts, webhook_events
from sagas.models import WebhookEvent, WebhookStatus

OUTBOX = WebhookEvent._meta.db_table
COLUMNS = ("event_id", "type", "url", "payload")
RECORD = "event_id uuid, type text, url text, payload jsonb"
# Set after a commit that wrote outbox rows: this process's delivery loop looks at once.
WRITTEN = threading.Event()


@dataclass(frozen=True)
class WebhookClaim:
    """An event leased for one delivery (`attempts` counts it)."""

    id: int
    event_id: uuid.UUID
    saga_id: uuid.UUID
    type: str
    url: str
    payload: dict
    attempts: int
    token: uuid.UUID


def outbox_rows(events: list[dict], saga: SagaFacts, notify: Notify | None) -> list[dict]:
    """The outbox rows the history `events` of one write cause (each with a new id)."""
    rows = []
    for body in webhook_events(events, saga, notify):
        event_id = str(uuid.uuid4())
        payload = {"id": event_id, **body}
        rows.append(
            {"event_id": event_id, "type": body["type"], "url": notify.url, "payload": payload}
        )
    return rows


def outbox_sql(saga_id: str, source: str) -> str:
    """PostgreSQL: INSERT the rows of the `webhooks` parameter (a JSON list, in order) for
    the saga `saga_id` of `source` (as history.history_sql)."""
    constants = {
        "status": "'pending'",
        "attempts": "0",
        "next_attempt_at": "statement_timestamp()",
        "created_at": "statement_timestamp()",
    }
    return recordset_insert(OUTBOX, saga_id, source, "webhooks", RECORD, COLUMNS, constants)


def outbox_params(rows: list[dict]) -> dict:
    return {"webhooks": json.dumps(rows, cls=DjangoJSONEncoder)}


def outbox_insert(saga_id, rows: list[dict], now: datetime) -> None:
    """The rows of one saga, in order, inside the caller's transaction (both databases)."""
    if not rows:
        return
    if dialect.is_postgresql():
        saga = dialect.adapt(WebhookEvent, "saga", saga_id)
        dialect.execute(
            outbox_sql("%(saga_id)s::uuid", ""), outbox_params(rows) | {"saga_id": saga}
        )
        return
    sql = (
        f"INSERT INTO {OUTBOX} (saga_id, event_id, type, url, payload, status, attempts,"
        " next_attempt_at, created_at) VALUES (%(saga_id)s, %(event_id)s, %(type)s, %(url)s,"
        " %(payload)s, 'pending', 0, %(now)s, %(now)s)"
    )
    moment = dialect.adapt(WebhookEvent, "created_at", now)
    for row in rows:
        params = {column: dialect.adapt(WebhookEvent, column, row[column]) for column in COLUMNS}
        params |= {"saga_id": dialect.adapt(WebhookEvent, "saga", saga_id), "now": moment}
        dialect.execute(sql, params)


CLAIMED = ("id", "event_id", "saga_id", "type", "url", "payload", "attempts")


def _due(alias: str = "") -> str:
    """Pending, due and not leased (a lease that expired is no lease)."""
    now = dialect.now_sql()
    return (
        f"{alias}status = 'pending' AND {alias}next_attempt_at <= {now}"
        f" AND ({alias}lease_expires_at IS NULL OR {alias}lease_expires_at <= {now})"
    )


def _candidate_sql() -> str:
    """The most overdue deliverable event: due, unleased, its saga's oldest pending one."""
    return (
        f"SELECT o.id FROM {OUTBOX} o WHERE {_due('o.')}"
        f" AND NOT EXISTS (SELECT 1 FROM {OUTBOX} e WHERE e.saga_id = o.saga_id"
        " AND e.status = 'pending' AND e.id < o.id)"
        f" ORDER BY o.next_attempt_at, o.id LIMIT 1 {dialect.skip_locked()}"
    )


def _claim_sql(target: str) -> str:
    # The WHERE re-checks the row itself: where nothing is locked (SQLite) this is the
    # compare-and-set that makes one claim win.
    return (
        f"UPDATE {OUTBOX} SET lease_token = {dialect.cast('token', 'uuid')},"
        f" lease_expires_at = {dialect.later_sql('lease_seconds')}, attempts = attempts + 1"
        f" WHERE id = {target} AND {_due()}"
        f" RETURNING {', '.join(CLAIMED)}"
    )


def outbox_claim(*, now: datetime, lease_seconds: float) -> WebhookClaim | None:
    """Lease the most overdue deliverable event (the oldest pending one of its saga), its
    attempt counted; None when none is due. `now`: the worker's clock, SQLite only.

    PostgreSQL: one UPDATE of the row its subquery picks, skipping rows another worker
    has locked. SQLite: the candidate read first (an idle poll writes nothing), then the
    UPDATE, which checks again that it is still due and unleased."""
    token = uuid.uuid4()
    params = {"token": dialect.adapt(WebhookEvent, "lease_token", token)}
    params |= dialect.clock_params(now, lease_seconds=lease_seconds)
    if dialect.is_postgresql():
        rows = dialect.execute(_claim_sql(f"({_candidate_sql()})"), params)
    else:
        candidate = dialect.execute(_candidate_sql(), params)
        if not candidate:
            return None
        rows = dialect.execute(_claim_sql("%(candidate)s"), params | {"candidate": candidate[0][0]})
    if not rows:
        return None
    values = dialect.row_values(WebhookEvent, CLAIMED, rows[0])
    return WebhookClaim(**values, token=token)


def outbox_settle(
    *,
    claim: WebhookClaim,
    status: str,
    now: datetime,
    status_code: int | None = None,
    error: str | None = None,
    delay_seconds: float | None = None,
) -> bool:
    """Record the delivery's end: `delivered`, `pending` again in `delay_seconds`, or
    `dead`; the lease ends. False when the lease was lost (nothing written)."""
    delivered = status == WebhookStatus.DELIVERED
    sql = (
        f"UPDATE {OUTBOX} SET status = %(status)s, lease_token = NULL, lease_expires_at = NULL,"
        f" next_attempt_at = COALESCE({dialect.later_sql('delay_seconds')}, next_attempt_at),"
        f" delivered_at = CASE WHEN {dialect.cast('delivered', 'boolean')}"
        f" THEN {dialect.now_sql()} ELSE NULL END,"
        " last_status_code = %(status_code)s, last_error = %(error)s"
        " WHERE id = %(id)s AND lease_token = %(token)s RETURNING id"
    )
    params = {
        "status": str(status),
        "delivered": delivered,
        "status_code": status_code,
        "error": error,
        "id": claim.id,
        "token": dialect.adapt(WebhookEvent, "lease_token", claim.token),
    }
    params |= dialect.clock_params(now, delay_seconds=delay_seconds)
    return len(dialect.execute(sql, params)) == 1


def outbox_redeliver(*, event_id, now: datetime) -> WebhookEvent | None:
    """A dead or delivered event pending again, due now, with a fresh attempt budget; None
    when it is neither (pending already, or no such event)."""
    changed = WebhookEvent.objects.filter(
        event_id=event_id, status__in=(WebhookStatus.DEAD, WebhookStatus.DELIVERED)
    ).update(
        status=WebhookStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        lease_token=None,
        lease_expires_at=None,
        delivered_at=None,
    )
    if not changed:
        return None
    return WebhookEvent.objects.get(event_id=event_id)
