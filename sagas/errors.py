"""Domain errors raised by services and the engine's control functions.

They know nothing of HTTP: `sagas/api/exceptions.py` maps each to its status and JSON body.
"""


class SagaError(Exception):
    """Base of the domain's refusals."""


class Conflict(SagaError):
    """The request conflicts with the current state; `saga_status` when it is about a saga."""

    def __init__(self, detail: str, *, saga_status: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.saga_status = saga_status


class NotFound(SagaError):
    """What the request names does not exist (HTTP 404)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class Forbidden(SagaError):
    """The request's credential does not allow it (HTTP 403)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class Invalid(SagaError):
    """The request names something the saga cannot do (HTTP 400); `field` names the part
    of the body at fault."""

    def __init__(self, detail: str, *, field: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.field = field
