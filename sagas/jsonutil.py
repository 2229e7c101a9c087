"""Small pure helpers for JSON documents: depth, storability, canonical form and hash."""

import hashlib
import json
import math
from typing import Any

# A saga input or a call body may nest this deep (a whole request body: see sagas.api.parsers).
MAX_VALUE_DEPTH = 20


def json_depth(value: Any) -> int:
    """Nesting depth: a scalar is 0, `{}`/`[]` is 1. Iterative, so any depth is safe."""
    deepest = 0
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def json_value_problem(value: Any, max_depth: int = MAX_VALUE_DEPTH) -> str | None:
    """Why a JSON value cannot be stored (PostgreSQL jsonb) or is too deep, or None."""
    if json_depth(value) > max_depth:
        return f"Nested deeper than {max_depth} levels."
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(str(key) for key in item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and not _storable_text(item):
            return "Strings must be valid Unicode without NUL characters."
        elif isinstance(item, float) and not math.isfinite(item):
            return "Numbers must be finite."
    return None


def _storable_text(text: str) -> bool:
    """jsonb refuses NUL; UTF-8 refuses lone surrogates (a JSON "\\ud800" escape)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces; the basis of every 'sameness' test."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: `patch` applied to `target`, neither changed. An object
    patch merges member by member (null removes); anything else replaces the target."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
