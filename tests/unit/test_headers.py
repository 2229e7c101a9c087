"""Header safety: template results can never inject CR/LF into participant headers."""

import pytest

from sagas.engine.headers import (
    MAX_HEADER_VALUE_LENGTH,
    header_name_problem,
    header_value_problem,
)


@pytest.mark.parametrize("value", ["tenant-1", "a b\tc", "é ü", "", "x" * MAX_HEADER_VALUE_LENGTH])
def test_ordinary_values_pass(value):
    assert header_value_problem(value) is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a\r\nX-Injected: 1", "CR, LF or NUL"),
        ("a\nb", "CR, LF or NUL"),
        ("a\rb", "CR, LF or NUL"),
        ("a\0b", "CR, LF or NUL"),
        ("a\x0bb", "control"),
        ("a\x7fb", "control"),
        ("a\u2028b", "Latin-1"),
        ("snow ☃", "Latin-1"),
        ("x" * (MAX_HEADER_VALUE_LENGTH + 1), "longer than"),
        (42, "string"),
        ({"a": 1}, "string"),
        (None, "string"),
    ],
)
def test_dangerous_values_refused(value, fragment):
    problem = header_value_problem(value)
    assert problem is not None and fragment in problem


@pytest.mark.parametrize("name", ["X-Tenant", "Authorization", "x_custom.1", "A!#$%&'*+^`|~"])
def test_token_names_pass(name):
    assert header_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "X Tenant", "X:Y", "X\r\nY", "Ü", "x" * 257, None, 3])
def test_bad_names_refused(name):
    assert header_name_problem(name) is not None
