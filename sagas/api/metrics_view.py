"""`GET /metrics`: Prometheus text format, internal role (DESIGN §3)."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema

# The classic text format (0.0.4), which every Prometheus version reads.
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from sagas.api.auth import IsInternal
from sagas.api.schema import errors
from sagas.api.throttling import UnknownKeyRateThrottle
from sagas.observability.metrics import metrics_text


class FirstRendererNegotiation(BaseContentNegotiation):
    """Prometheus sends `Accept: application/openmetrics-text, text/plain…`: never 406.

    The body is the text exposition whatever is asked; the JSON renderer is only used for
    DRF's own errors (401, 403).
    """

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MetricsView(APIView):
    permission_classes = [IsInternal]
    # Scrapes every few seconds must not eat the internal key's request budget; missing
    # and unknown keys are still limited per client IP, like everywhere (key guessing).
    throttle_classes = [UnknownKeyRateThrottle]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(
        operation_id="metrics",
        summary="Prometheus metrics (internal key)",
        responses={(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR), **errors(403)},
        tags=["operations"],
    )
    def get(self, request):
        return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
