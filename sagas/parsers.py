"""The one JSON parser: bounded body size, bounded nesting, 400 (never 500) on bad JSON.

DRF's JSONParser reads the request stream directly, so Django's DATA_UPLOAD_MAX_MEMORY_SIZE
never applies to it: without a bound a client could post any amount of JSON.
"""

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser, get_encoding

from sagas.jsonutil import MAX_DOCUMENT_DEPTH, json_depth


def body_limit(parser_context: dict) -> int:
    """A view may lower the limit with `max_body_bytes` (POST /api/sagas/ does)."""
    view_limit = getattr(parser_context.get("view"), "max_body_bytes", None)
    return view_limit or settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _declared_length(parser_context: dict) -> int:
    request = parser_context.get("request")
    meta = request.META if request is not None else {}
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ParseError("Invalid Content-Length header.")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class JsonParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        # Imported here: sagas.exceptions imports DRF's views, which import this parser.
        from sagas.exceptions import PayloadTooLarge

        context = parser_context or {}
        limit = body_limit(context)
        # Refuse before reading when the client already says it is too big.
        if _declared_length(context) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        try:
            text = raw.decode(get_encoding(context))
            data = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, UnicodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}")
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.")
        if json_depth(data) > MAX_DOCUMENT_DEPTH:
            raise ParseError(f"JSON nested deeper than {MAX_DOCUMENT_DEPTH} levels.")
        return data
