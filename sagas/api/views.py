"""The REST API (DESIGN §3). Each view validates, calls one service or selector, serializes."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from sagas import selectors, services
from sagas.api.auth import IsClient, IsInternal
from sagas.api.schema import (
    CALLBACK_EXAMPLES,
    CALLBACK_TOKEN_PARAMETER,
    CONFLICT_CANCEL,
    CONFLICT_PAUSE,
    DEFINITION_EXAMPLES,
    ERRORS,
    EVENT_LIST_EXAMPLES,
    EVENT_REDELIVER_EXAMPLES,
    HISTORY_EXAMPLES,
    INVALID_RESUME,
    LOG_EXAMPLES,
    REASON_EXAMPLES,
    RESUME_DESCRIPTION,
    RESUME_EXAMPLES,
    START_EXAMPLES,
    conflict_example,
    error_response,
    errors,
)
from sagas.api.serializers import (
    NAME_RE,
    AttemptSerializer,
    CallbackOutSerializer,
    CallbackSerializer,
    DefinitionOutSerializer,
    DefinitionQuerySerializer,
    DefinitionSerializer,
    EventFilterSerializer,
    EventSerializer,
    HistoryEntrySerializer,
    ReasonSerializer,
    ResumeSerializer,
    SagaFilterSerializer,
    SagaSerializer,
    SagaStartSerializer,
    ServiceStatusSerializer,
    is_control_char,
    saga_representation,
    start_request_validate,
)
from sagas.api.throttling import ClientIpRateThrottle
from sagas.engine import control
from sagas.engine.callback_receive import step_callback
from sagas.engine.repair import pause_refusal
from sagas.engine.trace_context import trace_incoming
from sagas.engine.transitions import cancel_refusal
from sagas.models import SagaInstance

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 255
# The body of cancel, retry and pause is at most a 500-character reason: room for it with
# every character escaped, and no more.
REASON_BODY_BYTES = 16 * 1024

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Up to 255 characters. The same key with the same body returns 200 and the saga "
        "started first; with a different body 409."
    ),
)

TRACE_PARAMETERS = [
    OpenApiParameter(
        "traceparent",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description=(
            "W3C Trace Context, version 00: the saga joins this trace; every participant "
            "call sends a `traceparent` with its trace id and flags and a new parent id. "
            "Absent or invalid: the saga starts a trace of its own."
        ),
    ),
    OpenApiParameter(
        "tracestate",
        str,
        OpenApiParameter.HEADER,
        required=False,
        description="Passed to every participant call as received (with a valid traceparent).",
    ),
]


def _saga_or_404(saga_id):
    saga = selectors.saga_get(saga_id=saga_id)
    if saga is None:
        raise NotFound("No saga with this id.")
    return saga


class DefinitionListCreateView(GenericAPIView):
    serializer_class = DefinitionOutSerializer

    def get_permissions(self):
        return [IsInternal()] if self.request.method == "POST" else [IsClient()]

    @extend_schema(
        operation_id="saga_definitions_list",
        summary="List definitions (latest version of each name)",
        responses={200: DefinitionOutSerializer(many=True), **errors(401)},
        tags=["definitions"],
    )
    def get(self, request):
        page = self.paginate_queryset(selectors.definition_list())
        return self.get_paginated_response(DefinitionOutSerializer(page, many=True).data)

    @extend_schema(
        operation_id="saga_definitions_create",
        summary="Create a definition or a new version of one (internal key)",
        description=(
            "201 with the new version; 200 with the latest version when the normalised "
            "content is identical to it (nothing is stored)."
        ),
        request=DefinitionSerializer,
        responses={
            201: DefinitionOutSerializer,
            200: DefinitionOutSerializer,
            **errors(400, 401, 403, 409, 413, 415),
        },
        examples=DEFINITION_EXAMPLES,
        tags=["definitions"],
    )
    def post(self, request):
        serializer = DefinitionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        definition, created = services.definition_create(data=serializer.validated_data)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(DefinitionOutSerializer(definition).data, status=code)


class DefinitionDetailView(GenericAPIView):
    serializer_class = DefinitionOutSerializer

    @extend_schema(
        operation_id="saga_definitions_retrieve",
        summary="A definition: its latest version, or ?version=N",
        parameters=[DefinitionQuerySerializer],
        responses={200: DefinitionOutSerializer, **errors(400, 401, 404)},
        tags=["definitions"],
    )
    def get(self, request, name: str):
        query = DefinitionQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        definition = None
        if NAME_RE.match(name):
            definition = selectors.definition_get(
                name=name, version=query.validated_data.get("version")
            )
        if definition is None:
            raise NotFound("No such definition or version.")
        return Response(DefinitionOutSerializer(definition).data)


class SagaListCreateView(GenericAPIView):
    serializer_class = SagaSerializer

    @property
    def max_body_bytes(self) -> int:
        """The body bound of POST /api/sagas/ (read by sagas.api.parsers.JsonParser)."""
        return settings.SAGA_MAX_INPUT_BYTES

    @extend_schema(
        operation_id="sagas_list",
        summary="List sagas, newest first",
        parameters=[SagaFilterSerializer],
        responses={200: SagaSerializer(many=True), **errors(400, 401)},
        tags=["sagas"],
    )
    def get(self, request):
        filters = SagaFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.saga_list(**filters.validated_data))
        return self.get_paginated_response(SagaSerializer(page, many=True).data)

    @extend_schema(
        operation_id="sagas_start",
        summary="Start a saga",
        description=(
            "202 with the new saga (status `pending`) and `Location`. With an "
            "`Idempotency-Key` already used for the same body: 200 and that saga. "
            "The whole body may be at most SAGA_MAX_INPUT_BYTES (413 otherwise)."
        ),
        request=SagaStartSerializer,
        parameters=[IDEMPOTENCY_PARAMETER, *TRACE_PARAMETERS],
        responses={
            202: SagaSerializer,
            200: SagaSerializer,
            **errors(400, 401, 409, 413, 415),
        },
        examples=START_EXAMPLES,
        tags=["sagas"],
    )
    def post(self, request):
        key = _idempotency_key(request)
        data = start_request_validate(request.data)
        saga, created = services.saga_start(
            definition=data["definition"],
            version=data["version"],
            saga_input=data["input"],
            idempotency_key=key,
            request_id=request.request_id,
            trace=trace_incoming(
                request.headers.get("traceparent"), request.headers.get("tracestate")
            ),
            actor=control.Actor(request.user.role, request.user.key_id),
        )
        body = saga_representation(saga)
        if not created:
            return Response(body, status=status.HTTP_200_OK)
        # The detail URL is this list URL plus the id (sagas/api/urls.py); request.path
        # already carries any script prefix, and it costs no URL reversal.
        location = f"{request.path}{saga.id}/"
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


def _idempotency_key(request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY or any(is_control_char(char) for char in key):
        raise ValidationError(
            {IDEMPOTENCY_HEADER: ["Must be 1 to 255 characters, without control characters."]}
        )
    return key


class SagaDetailView(GenericAPIView):
    serializer_class = SagaSerializer

    @extend_schema(
        operation_id="sagas_retrieve",
        summary="A saga with its steps",
        responses={200: SagaSerializer, **errors(401, 404)},
        tags=["sagas"],
    )
    def get(self, request, saga_id):
        return Response(saga_representation(_saga_or_404(saga_id)))


class SagaLogsView(GenericAPIView):
    serializer_class = AttemptSerializer
    pagination_class = None

    @extend_schema(
        operation_id="sagas_logs",
        summary="Every participant call attempt of a saga, in order (not paginated)",
        description=(
            "Each call in full: the headers sent (values of Authorization, Cookie, "
            "X-API-Key, X-Saga-Callback-Token and SAGA_REDACT_HEADERS as `***`), the "
            "request and response bodies (JSON, or text cut at SAGA_LOG_BODY_BYTES; "
            "`truncated` when either was cut). The call in flight comes last, with "
            "`outcome` and `response_body` null."
        ),
        responses={200: AttemptSerializer(many=True), **errors(401, 404)},
        examples=LOG_EXAMPLES,
        tags=["sagas"],
    )
    def get(self, request, saga_id):
        saga = _saga_or_404(saga_id)
        attempts = selectors.saga_attempt_list(saga_id=saga.id)
        return Response(AttemptSerializer(attempts, many=True).data)


class SagaHistoryView(GenericAPIView):
    serializer_class = HistoryEntrySerializer
    pagination_class = None

    @extend_schema(
        operation_id="sagas_history",
        summary="The lifecycle of a saga, in order (not paginated)",
        description=(
            "Every event: the engine's (`started`, `step_succeeded`, `step_failed`, "
            "`paused`, `compensating`, `finished`) and the actions asked through the API "
            "(`paused`, `resumed`, `cancel_requested`, `retried`), each with who asked "
            "(role and `key_id`, never the key), the reason given and its details."
        ),
        responses={200: HistoryEntrySerializer(many=True), **errors(401, 404)},
        examples=HISTORY_EXAMPLES,
        tags=["sagas"],
    )
    def get(self, request, saga_id):
        saga = _saga_or_404(saga_id)
        history = selectors.saga_history(saga_id=saga.id)
        return Response(HistoryEntrySerializer(history, many=True).data)


def _actor(request) -> control.Actor:
    """Who asks, as the history records it: the key's role and key_id, never the key."""
    return control.Actor(request.user.role, request.user.key_id)


class SagaActionView(GenericAPIView):
    """POST /api/sagas/{id}/<action>/: validate the optional body, one `engine.control`
    call (`act`), 202 with the saga. (The engine's event of the action, once committed,
    counts it in saga_operator_actions_total.)"""

    serializer_class = SagaSerializer
    body_serializer = ReasonSerializer
    # A reason is at most 500 characters: a body far larger is refused unread (413).
    max_body_bytes = REASON_BODY_BYTES

    def post(self, request, saga_id):
        body = self.body_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        saga = self.act(saga_id=saga_id, actor=_actor(request), **body.validated_data)
        return Response(saga_representation(saga), status=status.HTTP_202_ACCEPTED)

    def act(self, **arguments) -> SagaInstance:
        raise NotImplementedError


@extend_schema_view(
    post=extend_schema(
        operation_id="sagas_cancel",
        summary="Cancel a saga",
        description=(
            "202. A pending saga is cancelled at once; a running or paused one compensates "
            "the steps that took or may have taken effect (the one in flight too, even the "
            "last) and ends `cancelled`. 409, with the saga's current `status`, when it is "
            "compensating or finished, or a cancel was already accepted. The optional "
            "`reason` is recorded on the `cancel_requested` history event."
        ),
        request=ReasonSerializer,
        responses={
            202: SagaSerializer,
            **errors(400, 401, 404, 413, 415),
            409: error_response(CONFLICT_CANCEL),
        },
        examples=[
            *REASON_EXAMPLES,
            conflict_example("completed", cancel_refusal("completed", False)),
        ],
        tags=["sagas"],
    )
)
class SagaCancelView(SagaActionView):
    def act(self, **arguments) -> SagaInstance:
        return control.saga_cancel(**arguments)


@extend_schema_view(
    post=extend_schema(
        operation_id="sagas_retry",
        summary="Resume the compensation of a failed saga (internal key)",
        description=(
            "202. Only a `failed` saga can be retried; 409 otherwise. The optional "
            "`reason` is recorded on the `retried` history event."
        ),
        request=ReasonSerializer,
        responses={
            202: SagaSerializer,
            **errors(400, 401, 403, 404, 413, 415),
            409: error_response("The saga is not `failed`; `status` says what it is."),
        },
        examples=[
            *REASON_EXAMPLES,
            conflict_example(
                "completed", "Only failed sagas can be retried; this one is completed."
            ),
        ],
        tags=["sagas"],
    )
)
class SagaRetryView(SagaActionView):
    permission_classes = [IsInternal]

    def act(self, **arguments) -> SagaInstance:
        return control.saga_retry(**arguments)


@extend_schema_view(
    post=extend_schema(
        operation_id="sagas_pause",
        summary="Pause a saga (internal key)",
        description=(
            "202. A `pending` or `running` saga becomes `paused` at its next transition: a "
            "call in flight completes and is recorded first; a retry wait is cut short "
            "(paused at once). Nothing is undone; `resume` or `cancel` it later. The "
            "deadline does not run while paused. The optional `reason` is recorded on the "
            "`paused` history event."
        ),
        request=ReasonSerializer,
        responses={
            202: SagaSerializer,
            **errors(400, 401, 403, 404, 413, 415),
            409: error_response(CONFLICT_PAUSE),
        },
        examples=[
            *REASON_EXAMPLES,
            conflict_example("compensating", pause_refusal("compensating", False, None)),
        ],
        tags=["sagas"],
    )
)
class SagaPauseView(SagaActionView):
    permission_classes = [IsInternal]

    def act(self, **arguments) -> SagaInstance:
        return control.saga_pause(**arguments)


@extend_schema_view(
    post=extend_schema(
        operation_id="sagas_resume",
        summary="Resume a paused saga, optionally repaired (internal key)",
        description=RESUME_DESCRIPTION,
        request=ResumeSerializer,
        responses={
            202: SagaSerializer,
            400: error_response(INVALID_RESUME),
            **errors(401, 403, 404, 413, 415),
            409: error_response("The saga is not `paused`; `status` says what it is."),
        },
        examples=RESUME_EXAMPLES,
        tags=["sagas"],
    )
)
class SagaResumeView(SagaActionView):
    permission_classes = [IsInternal]
    body_serializer = ResumeSerializer

    @property
    def max_body_bytes(self) -> int:
        # An input patch may be as large as a start's whole input.
        return settings.SAGA_MAX_INPUT_BYTES

    def act(self, **arguments) -> SagaInstance:
        return control.saga_resume(**arguments)


class EventListView(GenericAPIView):
    serializer_class = EventSerializer
    permission_classes = [IsInternal]

    @extend_schema(
        operation_id="events_list",
        summary="Webhook events and their delivery state, newest first (internal key)",
        description=(
            "The outbox of lifecycle webhooks (definitions with `notify`). `pending`: "
            "waiting for its delivery (a saga's events are delivered in order: a later "
            "one waits for the earlier one to be delivered or dead); `delivered`: a 2xx "
            "answer; `dead`: SAGA_WEBHOOK_MAX_ATTEMPTS deliveries failed."
        ),
        parameters=[EventFilterSerializer],
        responses={200: EventSerializer(many=True), **errors(400, 401, 403)},
        examples=EVENT_LIST_EXAMPLES,
        tags=["events"],
    )
    def get(self, request):
        filters = EventFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.webhook_event_list(**filters.validated_data))
        return self.get_paginated_response(EventSerializer(page, many=True).data)


class EventRedeliverView(GenericAPIView):
    serializer_class = EventSerializer
    permission_classes = [IsInternal]

    @extend_schema(
        operation_id="events_redeliver",
        summary="Deliver a dead or delivered webhook event again (internal key)",
        description=(
            "202: the event is `pending` again, due now, with a fresh attempt budget. "
            "409 when it is pending already."
        ),
        request=None,
        responses={202: EventSerializer, **errors(401, 403, 404, 409)},
        examples=EVENT_REDELIVER_EXAMPLES,
        tags=["events"],
    )
    def post(self, request, event_id):
        event = services.webhook_redeliver(event_id=event_id)
        return Response(EventSerializer(event).data, status=status.HTTP_202_ACCEPTED)


class StepCallbackView(GenericAPIView):
    """An asynchronous step's outcome, from its participant (DESIGN §9.4). No API key:
    the X-Saga-Callback-Token header is the credential; limited per client IP."""

    serializer_class = CallbackSerializer
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [ClientIpRateThrottle]

    @property
    def max_body_bytes(self) -> int:
        """A callback's response is bounded like a call's answer (413 above)."""
        return settings.SAGA_MAX_RESPONSE_BYTES

    @extend_schema(
        operation_id="sagas_step_callback",
        summary="Report the outcome of an asynchronous step (its participant)",
        description=(
            "The participant of an action with `async` that answered 202 POSTs here "
            "(the URL it got in X-Saga-Callback-Url) with the X-Saga-Callback-Token it got. "
            "202: recorded, the saga moves on (or at resume when paused); a callback sent "
            "before the 202 was recorded is kept and applied then. 200: the same outcome "
            "and response were already recorded. 409: a different one was, or the step "
            "neither waits nor has its call in flight (timed out, cancelled, finished). "
            "403: the token is not this run's of this step. 404: unknown saga or step. "
            "413: a body over SAGA_MAX_RESPONSE_BYTES. Limited per client IP (429)."
        ),
        parameters=[CALLBACK_TOKEN_PARAMETER],
        request=CallbackSerializer,
        responses={
            202: CallbackOutSerializer,
            200: CallbackOutSerializer,
            **errors(400, 403, 404, 409, 413, 415),
        },
        examples=CALLBACK_EXAMPLES,
        auth=[],
        tags=["sagas"],
    )
    def post(self, request, saga_id, step: str):
        serializer = CallbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        body = serializer.validated_data
        received = step_callback(
            saga_id=saga_id,
            step=step,
            token=request.headers.get("X-Saga-Callback-Token"),
            outcome=body["outcome"],
            response=body.get("response"),
            error=body.get("error"),
        )
        answer = {"saga": str(saga_id), "step": step, "outcome": body["outcome"]}
        code = status.HTTP_202_ACCEPTED if received.recorded else status.HTTP_200_OK
        return Response(answer | {"recorded": received.recorded}, status=code)


class ServiceStatusView(GenericAPIView):
    """Open: figures only, no hosts, secrets or versions."""

    serializer_class = ServiceStatusSerializer
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []

    @extend_schema(
        operation_id="sagas_status",
        summary="Service status and saga figures (open)",
        description=(
            "`sagas`: totals per current status. Rates (0–1) and `avg_duration_ms` cover "
            "sagas finished in the last hour (cancelled ones do not count for the rates) "
            "and are null when none finished; `api` covers the last hour's requests "
            "(errors are 5xx answers). `status` is `degraded` when an alert fires or a "
            "dependency is down (Redis configured but unreachable, no live worker)."
        ),
        responses={200: ServiceStatusSerializer, 503: ERRORS[503]},
        auth=[],
        tags=["status"],
    )
    def get(self, request):
        return Response(ServiceStatusSerializer(selectors.saga_stats()).data)
