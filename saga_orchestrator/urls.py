from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from sagas.api.metrics_view import MetricsView

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/redoc/",
        # Same page without external font links (works with no internet).
        SpectacularRedocView.as_view(url_name="schema", template_name="sagas/redoc.html"),
        name="redoc",
    ),
    path("api/", include("sagas.api.urls")),
    path("health/", include("health.urls")),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("console/", include("console.urls")),
    # The front door: a browser pointed at the service lands in the operator console.
    path("", RedirectView.as_view(url="/console/", permanent=False)),
    path("console", RedirectView.as_view(url="/console/", permanent=False)),
]
