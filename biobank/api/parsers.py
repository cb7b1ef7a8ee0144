"""JSON bodies with a nesting limit (a deep body is a clear 400, never a RecursionError) and
text that is Unicode (JSON can spell half a surrogate pair, which no text can hold)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion (a scalar is 0, [] or {} is 1)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in item if isinstance(child, dict | list))
    return deepest


def _lone_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def json_bad_text(value: Any) -> str | None:
    """Where the parsed JSON holds a string with a lone surrogate ("kind", "units.0.name", "a
    key"), or None; without recursion."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _lone_surrogate(item):
                return path or "the body"
            continue
        if isinstance(item, dict):
            if any(_lone_surrogate(key) for key in item):
                return "a key"
            pairs = list(item.items())
        elif isinstance(item, list):
            pairs = [(str(i), child) for i, child in enumerate(item)]
        else:
            continue
        stack.extend((child, f"{path}.{key}" if path else key) for key, child in pairs)
    return None


class LimitedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit: int = settings.REQUEST_MAX_JSON_DEPTH
        too_deep = ParseError(
            f"JSON nested deeper than the limit of {limit} levels (REQUEST_MAX_JSON_DEPTH).",
            code="json_too_deep",
        )
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if json_depth(data) > limit:
            raise too_deep
        where = json_bad_text(data)
        if where is not None:
            raise ParseError(
                f"The text of {where} is not valid Unicode (half of a surrogate pair).",
                code="invalid_text",
            )
        return data
