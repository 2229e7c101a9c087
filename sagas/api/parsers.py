"""The JSON parser of the API: bounded body size and nesting; 400 (never 500) on bad JSON.

- A deeply nested document (`[[[[…`) makes Python's decoder raise RecursionError, which DRF
  does not expect (a 500). Here it is a 400, and so is anything nested deeper than
  MAX_JSON_DEPTH, well below the interpreter's recursion limit.
- DRF's JSONParser reads the request stream directly, so Django's
  DATA_UPLOAD_MAX_MEMORY_SIZE never applies to it: without a bound a client could post any
  amount of JSON. A body over the limit is a 413 (POST /api/sagas/ lowers the limit to
  SAGA_MAX_INPUT_BYTES through the view's `max_body_bytes`).
- NaN and Infinity are not JSON (PostgreSQL's jsonb refuses them): 400.
"""

import json

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from sagas.jsonutil import json_depth

MAX_JSON_DEPTH = 100
__all__ = ["MAX_JSON_DEPTH", "JSONParser", "json_depth"]


def body_limit(parser_context: dict) -> int:
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


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        # Imported here: sagas.api.exceptions imports DRF's views, which import this parser.
        from sagas.api.exceptions import PayloadTooLarge

        context = parser_context or {}
        limit = body_limit(context)
        # Refuse before reading when the client already says it is too big.
        if _declared_length(context) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        try:
            data = json.loads(
                raw.decode(parsers.get_encoding(context)), parse_constant=_reject_constant
            )
        except (ValueError, UnicodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}")
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        if json_depth(data) > MAX_JSON_DEPTH:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        return data
