"""OpenAPI documentation helpers: the X-API-Key scheme, error responses, examples."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from sagas.api.auth import HEADER
from sagas.api.serializers import ErrorSerializer
from sagas.engine.repair import resume_refusal


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
                "creates definitions, retries, pauses and resumes sagas, reads /metrics)."
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


def error_response(description: str) -> OpenApiResponse:
    """An error answer described for one operation (its own 400 or 409 rules)."""
    return OpenApiResponse(ErrorSerializer, description=description)


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

# The same saga waiting for an operator when an action fails for good (DESIGN §9.2),
# except the payment, whose failure is final: it compensates at once.
REPAIRABLE_DEFINITION = {
    **CHECKOUT_DEFINITION,
    "name": "order_checkout_repairable",
    "on_failure": "pause",
    "steps": [
        CHECKOUT_DEFINITION["steps"][0],
        {**CHECKOUT_DEFINITION["steps"][1], "on_failure": "compensate"},
        CHECKOUT_DEFINITION["steps"][2],
    ],
}

ASYNC_DEFINITION = {
    "name": "warehouse_checkout",
    "description": "Charge, then wait for the warehouse to confirm the pick",
    "steps": [
        {
            "name": "charge_payment",
            "action": {"method": "POST", "url": "http://payments:8000/charges"},
            "compensation": {"method": "POST", "url": "http://payments:8000/refunds"},
        },
        {
            "name": "pick_order",
            "action": {
                "method": "POST",
                "url": "http://warehouse:8000/picks",
                "body": {"order_id": "${input.order_id}"},
                "async": {"timeout_seconds": 3600},
            },
            "compensation": {"method": "POST", "url": "http://warehouse:8000/picks/cancel"},
        },
    ],
}

# Reserve stock and authorise the card at once (DESIGN §9.3), then ship with both answers.
GROUP_DEFINITION = {
    "name": "parallel_checkout",
    "description": "Reserve stock and authorise the card at once, then ship",
    "steps": [
        {
            "name": "prepare",
            "parallel": [
                CHECKOUT_DEFINITION["steps"][0],
                {
                    "name": "authorise_payment",
                    "action": {
                        "method": "POST",
                        "url": "http://payments:8000/authorisations",
                        "body": {"order_id": "${input.order_id}", "amount": "${input.amount}"},
                    },
                    "compensation": {
                        "method": "POST",
                        "url": "http://payments:8000/authorisations/"
                        "${steps.authorise_payment.response.authorisation_id}/void",
                    },
                },
            ],
        },
        {
            "name": "ship_order",
            "action": {
                "method": "POST",
                "url": "http://shipping:8000/shipments",
                "body": {
                    "reservation": "${steps.reserve_inventory.response.reservation_id}",
                    "authorisation": "${steps.authorise_payment.response.authorisation_id}",
                },
            },
        },
    ],
}

DEFINITION_EXAMPLES = [
    OpenApiExample("Checkout saga", value=CHECKOUT_DEFINITION, request_only=True),
    OpenApiExample(
        "Pause for an operator on failure", value=REPAIRABLE_DEFINITION, request_only=True
    ),
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
    OpenApiExample(
        "An asynchronous step",
        value=ASYNC_DEFINITION,
        request_only=True,
        description=(
            "`pick_order` may answer 202: it then waits (up to an hour) for the warehouse "
            "to POST its outcome to the callback URL it was sent."
        ),
    ),
    OpenApiExample(
        "A parallel group",
        value=GROUP_DEFINITION,
        request_only=True,
        description=(
            "`prepare` runs its 2-20 members at the same time; `ship_order` uses two of "
            "their responses. A member failing for good undoes the members that succeeded "
            "(together) before the earlier steps."
        ),
    ),
]

CALLBACK_TOKEN_PARAMETER = OpenApiParameter(
    "X-Saga-Callback-Token",
    str,
    OpenApiParameter.HEADER,
    required=True,
    description="The token sent with the step's call (one per saga, step and run).",
)

CALLBACK_EXAMPLES = [
    OpenApiExample(
        "Succeeded",
        value={"outcome": "succeeded", "response": {"pick_id": "pk-7", "boxes": 2}},
        request_only=True,
    ),
    OpenApiExample(
        "Failed",
        value={"outcome": "failed", "error": "out of stock at the warehouse"},
        request_only=True,
    ),
    OpenApiExample(
        "Recorded",
        value={
            "saga": "6f1c2f8e-5a0e-4c1b-9a55-2a1f0c3e9b10",
            "step": "pick_order",
            "outcome": "succeeded",
            "recorded": True,
        },
        response_only=True,
        status_codes=["202"],
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
    "run": 1,
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

# The same step's second run, after a resume: the key carries the run (DESIGN §9.2).
SECOND_RUN_EXAMPLE = {
    **LOG_ENTRY_EXAMPLE,
    "run": 2,
    "started_at": "2026-01-05T10:12:31.540000Z",
    "request_headers": {
        **LOG_ENTRY_EXAMPLE["request_headers"],
        "Idempotency-Key": "0b6f7c1e-8d2a-4f51-9a43-3c1d5e7f9a10:reserve_inventory:action:2",
    },
    "response_body": {"reservation_id": "R-2"},
}

# drf-spectacular shows an example of a list response as a list of that one entry.
LOG_EXAMPLES = [
    OpenApiExample("A call", value=LOG_ENTRY_EXAMPLE, response_only=True),
    OpenApiExample("A step run again after a resume", value=SECOND_RUN_EXAMPLE, response_only=True),
]

# Operator actions (DESIGN §9.1, §9.2) -----------------------------------------------------

REQUEST_ID = "5f0c2a9e4b7d41c8"
KEY_ID = "3fa91c07"

CONFLICT_CANCEL = (
    "The saga is compensating or finished, or a cancel was already accepted; `status` "
    "is its current status."
)
CONFLICT_PAUSE = (
    "The saga is neither `pending` nor `running` (paused, compensating, finished), or a "
    "pause is already pending, or a cancel was accepted; `status` is its current status."
)
INVALID_RESUME = (
    "Nothing changed. `errors` names the field: an unknown key, a wrong type, a `reason` "
    "over 500 characters; an `input_patch` that is not an object or leaves an input over "
    "SAGA_MAX_INPUT_BYTES or nested deeper than 20 levels; a `from_step` that is unknown "
    "or after the step where the saga stopped; `skip` together with `from_step`."
)
RESUME_DESCRIPTION = (
    "202: the `paused` saga is `running` again; 409 when it is not paused.\n\n"
    "- No body, `{}` or only a `reason`: continue where it stopped. A failed step is "
    "attempted again with a fresh attempt budget; after an operator's pause, what was "
    "next runs.\n"
    "- `input_patch`: an RFC 7396 JSON Merge Patch of the saga's input, applied before "
    "anything runs; later templates see the new input.\n"
    "- `from_step`: rewind. The steps from where the saga stopped back to `from_step` "
    "that succeeded or are uncertain are compensated first, in reverse order; then the "
    "saga runs forward from `from_step`. Their earlier responses leave `steps` (they "
    "stay in `/logs/` and `/history/`).\n"
    "- `skip`: the stopped step is marked `succeeded` with the given `response` without "
    "calling its participant; its compensation runs like any other's if the saga "
    "compensates later.\n\n"
    "A step that runs again is a new request for its participant: its Idempotency-Key "
    "ends in `:n` for its n-th run (`<saga>:<step>:<action|compensation>:<n>`, n ≥ 2). "
    "Except: a plain resume (no body, or only a `reason`) of a step whose last attempt "
    "was uncertain, whose request renders the same, reuses that attempt's key, so the "
    "participant can deduplicate. The `reason` and the change asked for are recorded "
    "on the `resumed` history event."
)

REASON_EXAMPLES = [
    OpenApiExample(
        "With a reason",
        value={"reason": "Customer called: order placed twice (ticket 4711)"},
        request_only=True,
    ),
    OpenApiExample("Without a body", value={}, request_only=True),
]


def conflict_example(saga_status: str, detail: str) -> OpenApiExample:
    """The 409 of an action refused while the saga is in `saga_status`."""
    return OpenApiExample(
        f"Refused while {saga_status}",
        value={
            "code": "conflict",
            "detail": detail,
            "status": saga_status,
            "request_id": REQUEST_ID,
        },
        response_only=True,
        status_codes=["409"],
    )


RESUME_EXAMPLES = [
    OpenApiExample(
        "Correct the input and retry the failed step",
        value={
            "input_patch": {"address": "1 Main St"},
            "reason": "Address corrected with the customer",
        },
        request_only=True,
    ),
    OpenApiExample(
        "Rewind to an earlier step",
        value={"from_step": "charge_payment", "reason": "Charge with the new card"},
        request_only=True,
    ),
    OpenApiExample(
        "Skip the stopped step",
        value={
            "skip": {"response": {"shipment_id": "manual-17"}},
            "reason": "Shipped by hand from the store",
        },
        request_only=True,
    ),
    OpenApiExample("Continue where it stopped", value={}, request_only=True),
    OpenApiExample(
        "A patch that is not an object",
        value={
            "code": "validation_error",
            "detail": "Invalid input.",
            "errors": {"input_patch": ["Must be a JSON object (an RFC 7396 merge patch)."]},
            "request_id": REQUEST_ID,
        },
        response_only=True,
        status_codes=["400"],
    ),
    conflict_example("running", resume_refusal("running")),
]

REJECTED = "HTTP 422: address not deliverable: 'Main St' has no house number"


def _history_entry(at: str, event: str, step=None, actor="system", **fields) -> dict:
    entry = {"at": f"2026-01-05T{at}Z", "event": event, "step": step, "actor": actor}
    return entry | {"key_id": "", "reason": "", "details": None} | fields


# A saga paused on a rejected address, repaired, completed (DESIGN §9.2).
HISTORY_EXAMPLE = [
    _history_entry("10:00:00.100000", "started", actor="client", key_id="8c41d2e0"),
    _history_entry(
        "10:00:00.160000",
        "step_succeeded",
        "reserve_inventory",
        details={"phase": "action", "run": 1, "attempt": 1, "status_code": 201},
    ),
    _history_entry(
        "10:00:00.240000",
        "step_failed",
        "ship_order",
        details={
            "phase": "action",
            "run": 1,
            "attempt": 1,
            "status_code": 422,
            "error": REJECTED,
        },
    ),
    _history_entry(
        "10:00:00.240000",
        "paused",
        "ship_order",
        details={"error": {"code": "step_failed", "step": "ship_order", "message": REJECTED}},
    ),
    _history_entry(
        "10:12:31.500000",
        "resumed",
        actor="internal",
        key_id=KEY_ID,
        reason="Address corrected with the customer",
        details={"input_patch": {"address": "1 Main St"}},
    ),
    _history_entry(
        "10:12:31.610000",
        "step_succeeded",
        "ship_order",
        details={"phase": "action", "run": 2, "attempt": 1, "status_code": 201},
    ),
    _history_entry("10:12:31.620000", "finished", details={"status": "completed", "error": None}),
]

# drf-spectacular shows an example of a list response as a list of that one entry.
HISTORY_EXAMPLES = [
    OpenApiExample(f"{number}. {entry['event']}", value=entry, response_only=True)
    for number, entry in enumerate(HISTORY_EXAMPLE, start=1)
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


class StepEntryExtension(OpenApiSerializerExtension):
    """A definition's step entry is a step or a parallel group (DESIGN §9.3): `oneOf`."""

    target_class = "sagas.api.serializers.StepEntrySerializer"

    def map_serializer(self, auto_schema, direction):
        from sagas.api.serializers import GroupSerializer, StepSerializer  # noqa: PLC0415

        step = auto_schema.resolve_serializer(StepSerializer, direction).ref
        group = auto_schema.resolve_serializer(GroupSerializer, direction).ref
        return {"oneOf": [step, group]}
