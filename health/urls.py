from django.urls import path

from health import views

urlpatterns = [
    path("", views.LiveView.as_view(), name="health"),
    path("detailed/", views.DetailedView.as_view(), name="health-detailed"),
]
