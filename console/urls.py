from django.urls import path, re_path

from console import views

app_name = "console"

urlpatterns = [
    path("", views.saga_list, name="sagas"),
    path("sign-in/", views.sign_in, name="sign-in"),
    path("logout/", views.sign_out, name="logout"),
    path("sagas/<uuid:saga_id>/", views.saga_detail, name="saga"),
    re_path(
        r"^sagas/(?P<saga_id>[0-9a-f-]{36})/(?P<action>cancel|retry|pause|resume)/$",
        views.saga_action,
        name="saga-action",
    ),
    path("definitions/", views.definition_list, name="definitions"),
    path("definitions/<str:name>/", views.definition_detail, name="definition"),
    path("status/", views.status_page, name="status"),
]
