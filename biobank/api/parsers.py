"""JSON bodies with a nesting limit: a deep body is a clear 400, never a RecursionError."""

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
        return data
