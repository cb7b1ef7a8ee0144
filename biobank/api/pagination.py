"""Every list's pagination: ``limit`` and ``offset`` checked, a bad one refused naming it."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from biobank.errors import ServiceError
from biobank.numbers import ascii_int

MAX_LIMIT = 1000
# Far beyond any list here, and well inside a 64-bit SQL integer (a larger one reached the
# database as a "datatype mismatch" and was answered as a 409 conflict).
MAX_OFFSET = 1_000_000_000


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's limit/offset pagination, but a limit or offset that is not a whole number within
    its bounds is a 400 naming it (DRF ignores a bad one, and passes a huge one on)."""

    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int | None:
        return _bounded(request, self.limit_query_param, 1, MAX_LIMIT, self.default_limit)

    def get_offset(self, request: Request) -> int:
        return _bounded(request, self.offset_query_param, 0, MAX_OFFSET, 0) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        bounds = {
            self.limit_query_param: (1, MAX_LIMIT),
            self.offset_query_param: (0, MAX_OFFSET),
        }
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            low, high = bounds[parameter["name"]]
            parameter["schema"].update(minimum=low, maximum=high)
        return parameters


def _bounded(request: Request, name: str, low: int, high: int, default: int | None) -> int | None:
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    value = ascii_int(raw)  # ASCII digits only: int() would read "٣" or "1_0"
    if value is None or not low <= value <= high:
        raise ServiceError(
            f"{name} must be a whole number from {low} to {high}.", code="invalid", field=name
        )
    return value
