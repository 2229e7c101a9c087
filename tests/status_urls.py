"""The project's URLs plus two test-only views that make real API figures: a slow answer
and an unhandled error (a 5xx through the real middleware stack)."""

import time

from django.http import HttpResponse
from django.urls import path

from saga_orchestrator.urls import urlpatterns as project_urlpatterns
from tests.security_urls import plain_boom


def slow(request):
    time.sleep(float(request.GET.get("seconds", "0")))
    return HttpResponse("slow")


urlpatterns = [
    *project_urlpatterns,
    path("test/slow/", slow),
    path("test/boom/", plain_boom),
]
