"""The API's content negotiation picks what DRF's own would, taking a shortcut only when
the client accepts anything."""

import pytest
from django.test import RequestFactory
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from sagas.api.negotiation import ContentNegotiation

JSON_ONLY = [JSONRenderer()]
SCHEMA = [OpenApiYamlRenderer(), OpenApiJsonRenderer()]


def negotiate(negotiation, renderers, accept=None, query="", suffix=None):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(RequestFactory().get("/api/sagas/" + query, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, suffix)
    except NotAcceptable:
        return "406"
    return type(renderer).__name__, media_type


@pytest.mark.parametrize("renderers", [JSON_ONLY, SCHEMA])
@pytest.mark.parametrize(
    ("accept", "query", "suffix"),
    [
        (None, "", None),
        ("*/*", "", None),
        ("*/*", "?format=json", None),
        ("*/*", "?format=", None),
        (None, "", "json"),
        ("application/json", "", None),
        ("application/json; indent=4", "", None),
        ("text/html", "", None),
        ("text/html, */*;q=0.8", "", None),
        ("application/vnd.oai.openapi", "", None),
    ],
)
def test_same_choice_as_drf(renderers, accept, query, suffix):
    ours = negotiate(ContentNegotiation(), renderers, accept, query, suffix)

    assert ours == negotiate(DefaultContentNegotiation(), renderers, accept, query, suffix)


def test_accepting_anything_gets_the_first_renderer():
    assert negotiate(ContentNegotiation(), SCHEMA) == (
        "OpenApiYamlRenderer",
        OpenApiYamlRenderer.media_type,
    )
    assert negotiate(ContentNegotiation(), JSON_ONLY, "text/html") == "406"
