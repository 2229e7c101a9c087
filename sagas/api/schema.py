"""OpenAPI documentation helpers: the X-API-Key scheme, error responses, examples."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiExample, OpenApiResponse

from sagas.api.auth import HEADER
from sagas.api.serializers import ErrorSerializer


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "sagas.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": HEADER,
            "description": (
                "SAGA_API_KEY (client role) or INTERNAL_API_KEY (internal role: also "
                "creates definitions, retries failed sagas, reads /metrics)."
            ),
        }


ERROR_DESCRIPTIONS = {
    400: "Invalid input: `errors` maps each field to its messages.",
    401: "Missing or unknown X-API-Key.",
    403: "The key's role may not do this.",
    404: "Not found.",
    409: "Conflict with the current state (or an Idempotency-Key reused with another body).",
    413: "Request body too large.",
    415: "Content-Type must be application/json.",
    503: "A dependency (PostgreSQL) is unavailable.",
}
ERRORS = {
    code: OpenApiResponse(ErrorSerializer, description=text)
    for code, text in ERROR_DESCRIPTIONS.items()
}


def errors(*codes: int) -> dict:
    return {code: ERRORS[code] for code in codes}


COMMON_DESCRIPTIONS = {
    401: ERROR_DESCRIPTIONS[401],
    429: "Over the rate limit (RATE_LIMIT_MAX_REQUESTS per RATE_LIMIT_WINDOW); see Retry-After.",
    503: ERROR_DESCRIPTIONS[503],
}
INVALID_PAGE = "No such page (`page` past the last one)."


def common_responses(result, generator, request, public):
    """Postprocessing hook: the answers any authenticated operation may give (401, 429,
    503) and a paginated list's 404, documented once here instead of on every view."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            added = dict(COMMON_DESCRIPTIONS) if operation.get("security") else {}
            if any(p.get("name") == "page" for p in operation.get("parameters", [])):
                added[404] = INVALID_PAGE
            for code, description in added.items():
                responses.setdefault(str(code), {"content": error, "description": description})
    return result


CHECKOUT_DEFINITION = {
    "name": "order_checkout",
    "description": "Reserve stock, charge, ship",
    "timeout_seconds": 300,
    "steps": [
        {
            "name": "reserve_inventory",
            "action": {
                "method": "POST",
                "url": "http://inventory:8000/reservations",
                "headers": {"X-Tenant": "${input.tenant}"},
                "body": {"order_id": "${input.order_id}", "items": "${input.items}"},
                "timeout_seconds": 10,
            },
            "compensation": {
                "method": "DELETE",
                "url": "http://inventory:8000/reservations/"
                "${steps.reserve_inventory.response.reservation_id}",
            },
            "retry": {
                "max_attempts": 3,
                "delay_seconds": 5,
                "backoff_multiplier": 2.0,
                "max_delay_seconds": 60,
            },
        },
        {
            "name": "charge_payment",
            "action": {
                "method": "POST",
                "url": "http://payments:8000/charges",
                "body": {
                    "order_id": "${input.order_id}",
                    "amount": "${input.amount}",
                    "reservation": "${steps.reserve_inventory.response.reservation_id}",
                },
            },
            "compensation": {
                "method": "POST",
                "url": "http://payments:8000/charges/${steps.charge_payment.response.charge_id}"
                "/refund",
            },
        },
        {
            "name": "ship_order",
            "action": {
                "method": "POST",
                "url": "http://shipping:8000/shipments",
                "body": {"order_id": "${input.order_id}", "address": "${input.address}"},
            },
        },
    ],
}

DEFINITION_EXAMPLES = [
    OpenApiExample("Checkout saga", value=CHECKOUT_DEFINITION, request_only=True),
    OpenApiExample(
        "With lifecycle webhooks",
        description=(
            "`notify`: each event is POSTed to `url`, signed (X-Saga-Signature); `events` "
            "left out means all. Refused (400) while SAGA_WEBHOOK_SECRET is not set."
        ),
        value=CHECKOUT_DEFINITION
        | {
            "notify": {
                "url": "https://hooks.example.com/sagas",
                "events": ["saga.completed", "saga.compensated", "saga.failed", "step.failed"],
            }
        },
        request_only=True,
    ),
]

START_EXAMPLES = [
    OpenApiExample(
        "Start a checkout",
        value={
            "definition": "order_checkout",
            "input": {
                "order_id": "A-1",
                "tenant": "acme",
                "items": [{"sku": "book-1", "qty": 2}],
                "amount": 42.5,
                "address": "1 Main St",
            },
        },
        request_only=True,
    ),
    OpenApiExample(
        "Start a given version",
        value={"definition": "order_checkout", "version": 1, "input": {"order_id": "A-2"}},
        request_only=True,
    ),
]

# One attempt of GET /api/sagas/{id}/logs/ (DESIGN §9.6): the call in full, redacted.
LOG_ENTRY_EXAMPLE = {
    "step": "reserve_inventory",
    "phase": "action",
    "attempt": 1,
    "method": "POST",
    "url": "http://inventory:8001/reserve",
    "status_code": 200,
    "outcome": "succeeded",
    "error": None,
    "started_at": "2026-01-05T10:00:00.120000Z",
    "duration_ms": 41.7,
    "request_headers": {
        "Authorization": "***",
        "Content-Type": "application/json",
        "Idempotency-Key": "0b6f7c1e-8d2a-4f51-9a43-3c1d5e7f9a10:reserve_inventory:action",
        "X-Saga-Id": "0b6f7c1e-8d2a-4f51-9a43-3c1d5e7f9a10",
        "X-Saga-Step": "reserve_inventory",
        "X-Request-ID": "5f0c2a9e4b7d41c8",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    },
    "request_body": {"order_id": "A-1", "items": [{"sku": "book-1", "qty": 2}]},
    "response_body": {"reservation_id": "R-1"},
    "truncated": False,
}

LOG_EXAMPLES = [
    OpenApiExample("A saga's calls", value=[LOG_ENTRY_EXAMPLE], response_only=True),
]

# One webhook event as GET /api/events/ lists it; `payload` is the body POSTed (§9.5).
WEBHOOK_BODY_EXAMPLE = {
    "id": "3d0f5a5e-2b8c-4b8e-9a57-1f2f6f4c9b21",
    "type": "saga.completed",
    "saga_id": "0b6f7c1e-8d2a-4f51-9a43-3c1d5e7f9a10",
    "definition": "order_checkout",
    "definition_version": 2,
    "status": "completed",
    "at": "2026-01-05T10:00:01.250000Z",
    "data": {"error": None},
}
EVENT_EXAMPLE = {
    "id": WEBHOOK_BODY_EXAMPLE["id"],
    "type": "saga.completed",
    "saga_id": WEBHOOK_BODY_EXAMPLE["saga_id"],
    "url": "https://hooks.example.com/sagas",
    "status": "dead",
    "attempts": 20,
    "next_attempt_at": "2026-01-06T05:12:44.000000Z",
    "last_status_code": 503,
    "last_error": "HTTP 503: unavailable",
    "created_at": "2026-01-05T10:00:01.250000Z",
    "delivered_at": None,
    "payload": WEBHOOK_BODY_EXAMPLE,
}
EVENT_LIST_EXAMPLES = [
    OpenApiExample(
        "A dead event",
        value={"count": 1, "next": None, "previous": None, "results": [EVENT_EXAMPLE]},
        response_only=True,
    ),
]
EVENT_REDELIVER_EXAMPLES = [
    OpenApiExample(
        "Pending again, due now",
        value=EVENT_EXAMPLE
        | {"status": "pending", "attempts": 0, "next_attempt_at": "2026-01-06T09:00:00Z"},
        response_only=True,
        status_codes=["202"],
    ),
]
