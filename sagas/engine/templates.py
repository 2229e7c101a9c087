"""`${…}` placeholders: static reference checks and run-time resolution. Pure.

A string that is exactly one placeholder takes the value with its JSON type; a placeholder
inside a longer string is interpolated as text (URL-encoded in URLs).
"""

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

from sagas.engine.headers import header_name_problem, header_value_problem

PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")
ROOTS = ("input", "steps", "saga")
SAGA_FIELDS = ("id", "definition")
STEP_FIELDS = ("response", "status_code")
_MISSING = object()


class TemplateError(ValueError):
    """A placeholder that does not resolve; `path` names it."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path


def placeholders(value: Any) -> Iterator[str]:
    """Every placeholder path in a JSON value (keys are not templated)."""
    if isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            yield match.group(1).strip()
    elif isinstance(value, dict):
        for item in value.values():
            yield from placeholders(item)
    elif isinstance(value, list):
        for item in value:
            yield from placeholders(item)


def reference_error(path: str, usable_steps: Iterable[str], all_steps: Iterable[str]) -> str | None:
    """Why `path` is not a valid reference for a call that may use `usable_steps`, or None."""
    parts = path.split(".")
    if not path or any(not part for part in parts):
        return f"'${{{path}}}' is not a valid placeholder"
    if any(_odd_digits(part) for part in parts):
        return f"'${{{path}}}': list indexes must be written with the digits 0-9"
    root = parts[0]
    if root not in ROOTS:
        return f"'${{{path}}}': unknown root '{root}' (use input, steps or saga)"
    if root == "saga":
        if len(parts) != 2 or parts[1] not in SAGA_FIELDS:
            return f"'${{{path}}}': saga has only saga.id and saga.definition"
        return None
    if root == "steps":
        return _step_reference_error(path, parts, set(usable_steps), set(all_steps))
    return None


def _step_reference_error(path: str, parts: list[str], usable: set, known: set) -> str | None:
    if len(parts) < 3 or parts[2] not in STEP_FIELDS:
        return f"'${{{path}}}': use steps.<step>.response… or steps.<step>.status_code"
    step = parts[1]
    if step not in known:
        return f"'${{{path}}}': no step named '{step}'"
    if step not in usable:
        return f"'${{{path}}}': step '{step}' does not run before this call"
    if parts[2] == "status_code" and len(parts) > 3:
        return f"'${{{path}}}': status_code has no fields"
    return None


def lookup(context: dict, path: str, *, lenient_steps: bool = False) -> Any:
    """The value at a dotted path; list indexes as `.0`.

    With `lenient_steps` (compensations), a step response that was never returned
    resolves to None instead of failing.
    """
    value: Any = context
    parts = path.split(".")
    for depth, part in enumerate(parts):
        value = _child(value, part)
        if value is _MISSING:
            if lenient_steps and _never_returned(context, parts):
                return None  # the step never returned a response (uncertain outcome)
            missing = ".".join(parts[: depth + 1])
            raise TemplateError(
                path, f"placeholder ${{{path}}} does not resolve: {missing} is missing"
            )
    return value


def _never_returned(context: dict, parts: list[str]) -> bool:
    """`parts` is steps.<step>.response… and that step has no response (or none at all)."""
    if parts[0] != "steps" or len(parts) < 2:
        return False
    returned = context.get("steps", {}).get(parts[1])
    if returned is None:
        return True
    return len(parts) > 2 and parts[2] == "response" and returned.get("response") is None


def _odd_digits(part: str) -> bool:
    """Digits other than 0-9 ("²", "٣"): str.isdigit() accepts them, int() not always."""
    return part.isdigit() and not part.isascii()


def _child(value: Any, part: str) -> Any:
    if isinstance(value, dict):
        return value.get(part, _MISSING)
    # isascii first: "²".isdigit() is True but int("²") raises ValueError.
    if isinstance(value, list) and part.isascii() and part.isdigit() and int(part) < len(value):
        return value[int(part)]
    return _MISSING


def as_text(value: Any) -> str:
    """How a value reads inside a longer string: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render(value: Any, context: dict, *, lenient_steps: bool = False, url: bool = False) -> Any:
    """Resolve every placeholder in a JSON value (dict keys are left alone)."""
    if isinstance(value, dict):
        return {k: render(v, context, lenient_steps=lenient_steps) for k, v in value.items()}
    if isinstance(value, list):
        return [render(item, context, lenient_steps=lenient_steps) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = PLACEHOLDER.fullmatch(value)
    if whole:
        found = lookup(context, whole.group(1).strip(), lenient_steps=lenient_steps)
        return as_text(found) if url else found

    def substitute(match: re.Match) -> str:
        text = as_text(lookup(context, match.group(1).strip(), lenient_steps=lenient_steps))
        return url_quote(text) if url else text

    return PLACEHOLDER.sub(substitute, value)


def url_quote(text: str) -> str:
    """A value as one URL segment: every reserved character percent-encoded, and `.` or
    `..` too (quote leaves dots alone; a dot segment would change the path's endpoint)."""
    if text in (".", ".."):
        return "%2E" * len(text)
    return quote(text, safe="")


def render_headers(headers: dict, context: dict, *, lenient_steps: bool = False) -> dict:
    """Header values as text, each checked by `headers.header_value_problem`: a value that
    would carry a line break (a smuggled header or request) or a control character is
    refused."""
    rendered = {}
    for name, value in headers.items():
        text = as_text(render(value, context, lenient_steps=lenient_steps))
        problem = header_name_problem(name) or header_value_problem(text)
        if problem:
            raise TemplateError(name, f"header {name} {problem}")
        rendered[name] = text
    return rendered


def context_for(saga_id: str, definition: str, saga_input: dict, steps: list[dict]) -> dict:
    """The resolution context: input, the saga, and what each step returned so far (a
    step an operator skipped returned the response given, with no status code)."""
    returned = {
        step["name"]: {"response": step["response"], "status_code": step["status_code"]}
        for step in steps
        if step.get("status_code") is not None or step.get("status") == "succeeded"
    }
    return {
        "input": saga_input,
        "steps": returned,
        "saga": {"id": saga_id, "definition": definition},
    }
