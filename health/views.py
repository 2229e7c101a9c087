"""Open health endpoints: liveness (no dependency) and per-dependency state."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from health.checks import health_report
from health.serializers import HealthSerializer, LiveSerializer


class OpenView(GenericAPIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []
    pagination_class = None


class LiveView(OpenView):
    serializer_class = LiveSerializer

    @extend_schema(
        operation_id="health",
        summary="Liveness: the process serves requests (touches no dependency)",
        responses={200: LiveSerializer},
        auth=[],
        tags=["health"],
    )
    def get(self, request):
        return Response({"status": "ok"})


class DetailedView(OpenView):
    serializer_class = HealthSerializer

    @extend_schema(
        operation_id="health_detailed",
        summary="Each dependency's state and latency",
        description="200 when ok or degraded (Redis down, no live worker); 503 when "
        "PostgreSQL is unreachable.",
        responses={
            200: HealthSerializer,
            503: OpenApiResponse(HealthSerializer, description="PostgreSQL is down."),
        },
        auth=[],
        tags=["health"],
    )
    def get(self, request):
        report = health_report()
        return Response(report, status=503 if report["status"] == "down" else 200)
