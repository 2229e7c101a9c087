"""Content negotiation: DRF's own, answered at once in the common case."""

from rest_framework.negotiation import DefaultContentNegotiation

ANY = "*/*"


class ContentNegotiation(DefaultContentNegotiation):
    """When the client accepts anything (no Accept header, or `*/*` as curl, requests and
    http.client send) and names no format, DRF parses the header only to pick the view's
    first renderer with that renderer's media type: return that directly. Any other
    request goes through DRF's negotiation unchanged (406, `?format=`, media parameters)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        accepts_any = request.META.get("HTTP_ACCEPT", ANY) == ANY
        override = self.settings.URL_FORMAT_OVERRIDE
        if accepts_any and renderers and not format_suffix and override not in request.query_params:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
