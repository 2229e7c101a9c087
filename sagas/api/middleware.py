"""Request ids on every request, and JSON instead of HTML for errors outside DRF."""

import logging
import re

from django.db import DatabaseError
from django.http import JsonResponse

from saga_orchestrator.request_context import current_request_id, reset_request_id, set_request_id
from sagas.api.exceptions import error_body

logger = logging.getLogger("sagas.api")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Accepts a sane X-Request-ID from the client or makes one; echoes it on the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Request-ID", "")
        token = set_request_id(supplied if REQUEST_ID.match(supplied) else None)
        try:
            request.request_id = current_request_id()
            response = self.get_response(request)
            response["X-Request-ID"] = request.request_id
            return response
        finally:
            reset_request_id(token)


STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    500: "internal_error",
}


class JsonErrorMiddleware:
    """Any non-JSON error response (Django's 404/400 pages) or uncaught exception → JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if getattr(response, "console_page", False):
            return response  # the console's HTML pages keep their own error pages
        if response.status_code >= 400 and not _is_json(response):
            code = STATUS_CODES.get(response.status_code, "error")
            detail = response.reason_phrase or "Error."
            return _json(response.status_code, code, detail, response)
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, DatabaseError):
            logger.error("database unavailable", exc_info=exception)
            return _json(
                503, "service_unavailable", "The database is unavailable; try again shortly."
            )
        logger.error("unhandled error", exc_info=exception)
        return _json(500, "internal_error", "Internal server error.")


def _is_json(response) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


def _json(status: int, code: str, detail: str, original=None) -> JsonResponse:
    response = JsonResponse(error_body(code, detail), status=status)
    if original is not None and original.has_header("Allow"):
        response["Allow"] = original["Allow"]
    return response
