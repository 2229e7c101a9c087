"""The sagas page's query: the API's filters (validated by the API's own serializer), a
search by saga id or Idempotency-Key, counts per status, and keyset pagination.

Keyset, not OFFSET: a page is `created_at, id` below (or above) the cursor, newest first,
read from the created_at indexes however deep the page, and rows arriving at the top
while someone reads page 3 do not shift what page 4 shows.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime

from sagas import selectors
from sagas.api.serializers import SagaFilterSerializer
from sagas.models import SagaInstance, SagaStatus

PAGE_SIZE = 50
# Counts stop here ("10000+"): each status's count reads at most this many index entries,
# so the tabs cost the same with a hundred thousand sagas as with a hundred million.
COUNT_CAP = 10_000
FILTERS = ("status", "definition", "created_after", "created_before")
MAX_SEARCH = 255


@dataclass
class Page:
    sagas: list[SagaInstance] = field(default_factory=list)
    counts: list[dict] = field(default_factory=list)  # {"status", "count", "more"}
    total: dict = field(default_factory=dict)  # {"count", "more"}
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
    page.counts = [
        {"status": value, **_count_capped(everything.filter(status=value))}
        for value in SagaStatus.values
    ]
    page.total = _count_capped(everything)
    listed = everything.filter(status=status) if status else everything
    # The row's big JSON columns are not shown: 50 rows stay small however large the input.
    listed = listed.defer("input", "steps", "cause", "request_fingerprint", "traceparent")
    _fill(page, listed, cursors.get("before"), cursors.get("after"))
    return page


def _count_capped(sagas: QuerySet) -> dict:
    """COUNT(*) over at most COUNT_CAP + 1 rows (a LIMIT in a subquery: an index range
    scan that stops early); `more` when there are more than COUNT_CAP."""
    found = sagas.order_by()[: COUNT_CAP + 1].count()
    return {"count": min(found, COUNT_CAP), "more": found > COUNT_CAP}


def _fill(page: Page, sagas: QuerySet, before, after) -> None:
    if after is not None:
        moment, saga_id = after
        newer = sagas.filter(created_at__gte=moment).exclude(created_at=moment, id__lte=saga_id)
        rows = list(newer.order_by("created_at", "id")[: PAGE_SIZE + 1])
        more_newer = len(rows) > PAGE_SIZE
        page.sagas = list(reversed(rows[:PAGE_SIZE]))
        page.newer = cursor_of(page.sagas[0]) if more_newer else None
        page.older = cursor_of(page.sagas[-1]) if page.sagas else None
        return
    if before is not None:
        # (created_at, id) < cursor, written so that the created_at index bounds the scan
        # (an OR of the two cases would make PostgreSQL filter the whole index).
        moment, saga_id = before
        sagas = sagas.filter(created_at__lte=moment).exclude(created_at=moment, id__gte=saga_id)
    rows = list(sagas[: PAGE_SIZE + 1])  # saga_list orders newest first
    page.sagas = rows[:PAGE_SIZE]
    page.older = cursor_of(page.sagas[-1]) if len(rows) > PAGE_SIZE else None
    page.newer = cursor_of(page.sagas[0]) if before is not None and page.sagas else None
