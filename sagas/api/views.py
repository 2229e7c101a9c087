"""The REST API (DESIGN §3). Each view validates, calls one service or selector, serializes."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from sagas import selectors, services
from sagas.api.auth import IsClient, IsInternal
from sagas.api.schema import DEFINITION_EXAMPLES, ERRORS, LOG_EXAMPLES, START_EXAMPLES, errors
from sagas.api.serializers import (
    NAME_RE,
    AttemptSerializer,
    DefinitionOutSerializer,
    DefinitionQuerySerializer,
    DefinitionSerializer,
    SagaFilterSerializer,
    SagaSerializer,
    SagaStartSerializer,
    ServiceStatusSerializer,
    is_control_char,
    saga_representation,
    start_request_validate,
)
from sagas.engine import control
from sagas.engine.trace_context import trace_incoming

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 255

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


class SagaCancelView(GenericAPIView):
    serializer_class = SagaSerializer

    @extend_schema(
        operation_id="sagas_cancel",
        summary="Cancel a saga",
        description=(
            "202. A pending saga is cancelled at once; a running one compensates its "
            "steps (the one in flight too, even the last) and ends `cancelled`. 409, with "
            "the saga's current `status`, when it is compensating or finished, or a cancel "
            "was already accepted."
        ),
        request=None,
        responses={202: SagaSerializer, **errors(401, 404, 409)},
        tags=["sagas"],
    )
    def post(self, request, saga_id):
        saga = control.saga_cancel(saga_id=saga_id)
        return Response(saga_representation(saga), status=status.HTTP_202_ACCEPTED)


class SagaRetryView(GenericAPIView):
    serializer_class = SagaSerializer
    permission_classes = [IsInternal]

    @extend_schema(
        operation_id="sagas_retry",
        summary="Resume the compensation of a failed saga (internal key)",
        description="202. Only a `failed` saga can be retried; 409 otherwise.",
        request=None,
        responses={202: SagaSerializer, **errors(401, 403, 404, 409)},
        tags=["sagas"],
    )
    def post(self, request, saga_id):
        saga = control.saga_retry(saga_id=saga_id)
        return Response(saga_representation(saga), status=status.HTTP_202_ACCEPTED)


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
