"""Every error the API returns, and the one handler that renders them as JSON.

Body: {"code": "...", "detail": "...", "errors": {...field messages...}, "request_id": "..."}
(plus "status", the saga's current status, on a 409 about a saga).
"""

import logging

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, RequestDataTooBig
from django.db import DatabaseError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from saga_orchestrator.request_context import current_request_id
from sagas import errors as domain
from sagas.api.throttling import throttled_before_view

logger = logging.getLogger("sagas.api")


class ApiError(exceptions.APIException):
    """Base of the service's own errors: each subclass carries its status and code."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"
    default_detail = "Bad request."


class Conflict(ApiError):
    """409; when about a saga, the body also carries its current `status` (§9.1)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request conflicts with the saga's current state."

    def __init__(self, detail=None, *, saga_status: str | None = None):
        super().__init__(detail)
        self.extra = {} if saga_status is None else {"status": str(saga_status)}


class PayloadTooLarge(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "Request body too large."


class ServiceUnavailable(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"
    default_detail = "A dependency is unavailable; try again shortly."


# DRF's own codes, made uniform and readable.
CODES = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "malformed_request",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def error_body(code: str, detail: str, errors=None) -> dict:
    body = {"code": code, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    body["request_id"] = current_request_id()
    return body


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every error as one JSON shape; database outages as 503."""
    exc = throttled_before_view(exc, context) or exc
    if isinstance(exc, domain.Conflict):
        exc = Conflict(exc.detail, saga_status=exc.saga_status)
    elif isinstance(exc, domain.Invalid):
        exc = exceptions.ValidationError({exc.field or "non_field_errors": [exc.detail]})
    elif isinstance(exc, domain.NotFound):
        exc = exceptions.NotFound(exc.detail)
    elif isinstance(exc, domain.Forbidden):
        exc = exceptions.PermissionDenied(exc.detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DatabaseError):
        logger.error("database unavailable", exc_info=exc)
        exc = ServiceUnavailable("The database is unavailable; try again shortly.")

    # A saga looked up by id that does not exist (e.g. in engine.control) is a 404.
    elif isinstance(exc, ObjectDoesNotExist):
        exc = exceptions.NotFound()
    # Django's own body-size check, should anything read request.body first.
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: JsonErrorMiddleware logs it and answers a JSON 500
    response.data = _body_for(exc, response.data)
    return response


def _body_for(exc: exceptions.APIException, data) -> dict:
    code = CODES.get(type(exc)) or getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.ValidationError):
        errors = data if isinstance(data, dict) else {"non_field_errors": data}
        return error_body(code, "Invalid input.", errors)
    detail = data.get("detail", "") if isinstance(data, dict) else str(data)
    return error_body(code, str(detail)) | getattr(exc, "extra", {})


def json_error(status_code: int, code: str, detail: str) -> Response:
    return Response(error_body(code, detail), status=status_code)
