"""A test-only URLconf for the security tests: limited, internal, open and failing views,
plus the real schema and docs views. Used with @override_settings(ROOT_URLCONF=...) in
process, and through tests/security_settings.py by Gunicorn subprocesses."""

import os
import time

from django.db import OperationalError
from django.http import HttpResponse
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from sagas.api.auth import IsInternal


class LimitedView(APIView):
    """An ordinary API view: default authentication, permission and throttle."""

    def get(self, request):
        return Response({"ok": True, "role": request.user.role})

    def post(self, request):
        return Response({"received": request.data})


class InternalView(APIView):
    permission_classes = [IsInternal]

    def get(self, request):
        return Response({"ok": True})


class OpenView(APIView):
    """Like /health/: open and explicitly unlimited. `?sleep=s` holds the worker a moment."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []

    def get(self, request):
        time.sleep(min(float(request.query_params.get("sleep", 0)), 1.0))
        return Response({"status": "ok"})


class OpenDefaultThrottleView(APIView):
    """Open but without `throttle_classes = []`: the throttle still exempts it."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"status": "ok"})


LEAKY_MESSAGE = (
    'File "/srv/app/sagas/secret_module.py", line 12: SELECT password FROM auth_user '
    "WHERE key = 'test-saga-key'"
)


class BoomView(APIView):
    def get(self, request):
        raise RuntimeError(LEAKY_MESSAGE)


class DatabaseDownView(APIView):
    def get(self, request):
        raise OperationalError("could not connect to server at 10.9.8.7:5432 " + LEAKY_MESSAGE)


def plain_boom(request):
    raise ValueError(LEAKY_MESSAGE)


def plain_database_down(request):
    raise OperationalError("connection refused " + LEAKY_MESSAGE)


def plain_ok(request):
    return HttpResponse("plain")


class WorkerPidMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["X-Worker-Pid"] = str(os.getpid())
        return response


urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/limited/", LimitedView.as_view()),
    path("api/internal/", InternalView.as_view()),
    path("api/boom/", BoomView.as_view()),
    path("api/db-down/", DatabaseDownView.as_view()),
    path("open/", OpenView.as_view()),
    path("open-default/", OpenDefaultThrottleView.as_view()),
    path("plain/boom/", plain_boom),
    path("plain/db-down/", plain_database_down),
    path("plain/ok/", plain_ok),
]
