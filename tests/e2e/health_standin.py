"""Settings for the healthcheck test: the real URLconf, plus a stand-in `/health/`.

The real `/health/` (health/ app) comes first in the URLconf and wins when it exists; the
stand-in only answers while this branch has no health view, so that the Dockerfile's
HEALTHCHECK command is exercised against a real Gunicorn either way.
"""

from django.http import JsonResponse
from django.urls import include, path

from saga_orchestrator.settings import *  # noqa: F403

ROOT_URLCONF = "tests.e2e.health_standin"


def health_standin(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("", include("saga_orchestrator.urls")),
    path("health/", health_standin),
]
