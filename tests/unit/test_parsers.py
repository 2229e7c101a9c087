"""The API's JSON parser refuses documents nested too deeply (400, never a 500)."""

import io

import pytest
from rest_framework.exceptions import ParseError

from sagas.api.parsers import MAX_JSON_DEPTH, JSONParser, json_depth


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), ([], 1), ({"a": [1, {"b": []}]}, 4), ([[[]], []], 3)],
)
def test_json_depth(value, depth):
    assert json_depth(value) == depth


def parse(text: str):
    return JSONParser().parse(io.BytesIO(text.encode()), "application/json", {})


def test_nesting_up_to_the_limit_parses():
    assert json_depth(parse("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)) == MAX_JSON_DEPTH


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeper_nesting_is_a_parse_error(levels):
    with pytest.raises(ParseError, match="nested deeper"):
        parse('{"a":' * levels + "1" + "}" * levels)
