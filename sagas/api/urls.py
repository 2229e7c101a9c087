from django.urls import path

from sagas.api import views

urlpatterns = [
    path("saga-definitions/", views.DefinitionListCreateView.as_view(), name="definition-list"),
    path(
        "saga-definitions/<str:name>/",
        views.DefinitionDetailView.as_view(),
        name="definition-detail",
    ),
    path("sagas/", views.SagaListCreateView.as_view(), name="saga-list"),
    # Before the <uuid> routes; a non-UUID id matches nothing → JSON 404.
    path("sagas/status/", views.ServiceStatusView.as_view(), name="saga-status"),
    path("sagas/<uuid:saga_id>/", views.SagaDetailView.as_view(), name="saga-detail"),
    path("sagas/<uuid:saga_id>/logs/", views.SagaLogsView.as_view(), name="saga-logs"),
    path("sagas/<uuid:saga_id>/cancel/", views.SagaCancelView.as_view(), name="saga-cancel"),
    path("sagas/<uuid:saga_id>/retry/", views.SagaRetryView.as_view(), name="saga-retry"),
    path("sagas/<uuid:saga_id>/pause/", views.SagaPauseView.as_view(), name="saga-pause"),
    path("sagas/<uuid:saga_id>/resume/", views.SagaResumeView.as_view(), name="saga-resume"),
    path("sagas/<uuid:saga_id>/history/", views.SagaHistoryView.as_view(), name="saga-history"),
    path("events/", views.EventListView.as_view(), name="event-list"),
    path(
        "events/<uuid:event_id>/redeliver/",
        views.EventRedeliverView.as_view(),
        name="event-redeliver",
    ),
    path(
        "sagas/<uuid:saga_id>/steps/<str:step>/callback/",
        views.StepCallbackView.as_view(),
        name="saga-step-callback",
    ),
]
