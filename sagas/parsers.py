"""The JSON parser of the API: DRF's, with a nesting limit.

A deeply nested document (`[[[[…`) makes Python's decoder raise RecursionError, which DRF
does not expect: it would be a 500. Here it is a 400, and so is anything nested deeper than
MAX_JSON_DEPTH, well below the interpreter's recursion limit.
"""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 100


def json_depth(value) -> int:
    """Nesting depth of a parsed JSON value (scalars 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        if json_depth(data) > MAX_JSON_DEPTH:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels.")
        return data
