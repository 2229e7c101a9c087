"""Whether a header may be sent to a participant. Pure. The one implementation, used when
a definition is validated (sagas/api/serializers.py: names, and values as written) and when a
call's headers are rendered (templates.render_headers: values after substitution).

Header values come from templates (`"X-Tenant": "${input.tenant}"`), i.e. from client
input: a CR or LF there would let a client add headers or a whole request (header
injection / request smuggling), so rendered values are checked before every call.
"""

import re

MAX_HEADER_VALUE_LENGTH = 8192
MAX_HEADER_NAME_LENGTH = 256
# RFC 9110 token characters.
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers a definition may not set (DESIGN §6a): the framing ones belong to the HTTP client
# (a value sent as given would smuggle a request on a shared keep-alive connection); the
# service's own would be silently overwritten. Lower case; X-Saga-* by prefix.
RESERVED_HEADERS = frozenset(
    ("host", "content-length", "transfer-encoding", "connection", "upgrade", "idempotency-key")
)
RESERVED_PREFIX = "x-saga-"


def header_value_problem(value: object) -> str | None:
    """Why `value` may not be sent as a header value, or None.

    Refused: non-strings, CR, LF, NUL and every other control character except tab,
    characters outside Latin-1 (http.client cannot encode them), and over-long values.
    """
    if not isinstance(value, str):
        return "must be a string"
    if value.isascii() and value.isprintable() and len(value) <= MAX_HEADER_VALUE_LENGTH:
        return None  # the usual case, decided in C (isprintable is False for any control)
    if len(value) > MAX_HEADER_VALUE_LENGTH:
        return f"is longer than {MAX_HEADER_VALUE_LENGTH} characters"
    for ch in value:
        if ch in "\r\n\0":
            return "must not contain CR, LF or NUL (a line break could inject headers)"
        if (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            return "must not contain control characters"
        if ord(ch) > 0xFF:
            return "must contain only Latin-1 characters"
    return None


def header_name_problem(name: object) -> str | None:
    """Why `name` may not be a header name, or None (an RFC 9110 token, bounded)."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > MAX_HEADER_NAME_LENGTH:
        return f"is longer than {MAX_HEADER_NAME_LENGTH} characters"
    if not TOKEN.match(name):
        return "must contain only letters, digits and !#$%&'*+-.^_`|~"
    return None


def header_reserved_problem(name: str) -> str | None:
    """Why a definition may not set header `name` (any case), or None."""
    lowered = name.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_PREFIX):
        return "is set by the orchestrator; a definition may not set it"
    return None
