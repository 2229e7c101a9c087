"""The sagas page's query: the API's filters (validated by the API's own serializer), a
search by saga id or Idempotency-Key, counts per status, and keyset pagination.

Keyset, not OFFSET: a page is `created_at, id` below (or above) the cursor, newest first,
read from the created_at indexes however deep the page, and rows arriving at the top
while someone reads page 3 do not shift what page 4 shows.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Q, QuerySet
from django.utils.dateparse import parse_datetime

from sagas import selectors
from sagas.api.serializers import SagaFilterSerializer
from sagas.models import SagaInstance, SagaStatus

PAGE_SIZE = 50
FILTERS = ("status", "definition", "created_after", "created_before")
MAX_SEARCH = 255


@dataclass
class Page:
    sagas: list[SagaInstance] = field(default_factory=list)
    counts: list[dict] = field(default_factory=list)  # {"status", "count"}, every status
    total: int = 0
    older: str | None = None  # cursor of the next (older) page
    newer: str | None = None  # cursor of the previous (newer) page
    errors: dict[str, str] = field(default_factory=dict)


def cursor_of(saga: SagaInstance) -> str:
    return f"{saga.created_at.isoformat()}_{saga.id}"


def cursor_parse(value: str) -> tuple[datetime, uuid.UUID] | None:
    moment, _, saga_id = value.rpartition("_")
    try:
        parsed = parse_datetime(moment)
        return (parsed, uuid.UUID(saga_id)) if parsed else None
    except ValueError:
        return None


def filters_validate(query) -> tuple[dict, dict[str, str]]:
    """The API's filters from the query string (empty fields ignored), and errors by field."""
    given = {name: query[name] for name in FILTERS if query.get(name, "").strip()}
    serializer = SagaFilterSerializer(data=given)
    if serializer.is_valid():
        return dict(serializer.validated_data), {}
    return {}, {name: " ".join(str(e) for e in errs) for name, errs in serializer.errors.items()}


def search_filter(text: str) -> Q:
    """A saga id when the text is a UUID; an Idempotency-Key in every case."""
    text = text.strip()[:MAX_SEARCH]
    try:
        return Q(id=uuid.UUID(text)) | Q(idempotency_key=text)
    except ValueError:
        return Q(idempotency_key=text)


def page_read(query) -> Page:
    page = Page()
    filters, page.errors = filters_validate(query)
    cursors = {}
    for direction in ("before", "after"):
        raw = query.get(direction, "")
        if raw:
            cursors[direction] = cursor_parse(raw)
            if cursors[direction] is None:
                page.errors[direction] = "Not a page cursor of this list."
    if page.errors:
        return page
    status = filters.pop("status", None)
    everything = selectors.saga_list(**filters)
    search = query.get("q", "").strip()
    if search:
        everything = everything.filter(search_filter(search))
    page.counts = _counts(everything)
    page.total = sum(entry["count"] for entry in page.counts)
    listed = everything.filter(status=status) if status else everything
    # The row's big JSON columns are not shown: 50 rows stay small however large the input.
    listed = listed.defer("input", "steps", "cause", "request_fingerprint", "traceparent")
    _fill(page, listed, cursors.get("before"), cursors.get("after"))
    return page


def _counts(sagas: QuerySet) -> list[dict]:
    """Counts per status under the other filters (one GROUP BY, from the status index)."""
    rows = dict(sagas.order_by().values_list("status").annotate(n=Count("id")))
    return [{"status": status, "count": rows.get(status, 0)} for status in SagaStatus.values]


def _fill(page: Page, sagas: QuerySet, before, after) -> None:
    if after is not None:
        moment, saga_id = after
        newer = sagas.filter(Q(created_at__gt=moment) | Q(created_at=moment, id__gt=saga_id))
        rows = list(newer.order_by("created_at", "id")[: PAGE_SIZE + 1])
        more_newer = len(rows) > PAGE_SIZE
        page.sagas = list(reversed(rows[:PAGE_SIZE]))
        page.newer = cursor_of(page.sagas[0]) if more_newer else None
        page.older = cursor_of(page.sagas[-1]) if page.sagas else None
        return
    if before is not None:
        moment, saga_id = before
        sagas = sagas.filter(Q(created_at__lt=moment) | Q(created_at=moment, id__lt=saga_id))
    rows = list(sagas[: PAGE_SIZE + 1])  # saga_list orders newest first
    page.sagas = rows[:PAGE_SIZE]
    page.older = cursor_of(page.sagas[-1]) if len(rows) > PAGE_SIZE else None
    page.newer = cursor_of(page.sagas[0]) if before is not None and page.sagas else None
