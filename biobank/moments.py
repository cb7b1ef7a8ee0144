"""A plausible date-time: the one bound every typed-in or uploaded time is held to (pure code).

Python's dates run from year 1 to 9999, but a value near either end cannot be moved to another
time zone (to UTC for the database, to the site's zone for display) without overflowing. No
record of this trial lies outside ``EARLIEST_YEAR`` … ``LATEST_YEAR``: anything beyond is a
typing error, refused where it comes in (API fields and filters, admin forms and list
filters, the catalogue's services, the audit export's window, logger files).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.exceptions import ValidationError

from biobank.errors import ServiceError

EARLIEST_YEAR = 1900
LATEST_YEAR = 2200
CODE = "date_out_of_range"


def is_plausible_year(year: int) -> bool:
    return EARLIEST_YEAR <= year <= LATEST_YEAR


def is_plausible(value: dt.date) -> bool:
    """Whether a date or date-time (its year as written, whatever its zone) is in the bound."""
    return is_plausible_year(value.year)


def out_of_range_message(name: str = "") -> str:
    years = f"the years {EARLIEST_YEAR} and {LATEST_YEAR}"
    return f"{name} must be between {years}." if name else f"Enter a date between {years}."


def moment_check(value: dt.date, *, field: str) -> None:
    """Refuse a date or date-time outside the bound (``ServiceError`` naming the field)."""
    if not is_plausible(value):
        raise ServiceError(out_of_range_message(field), code=CODE, field=field)


class PlausibleFormField:
    """Mixin for a Django form date or date-time field (admin forms, API query filters): a value
    outside the bound is a validation error, not an overflow when it is made aware."""

    def to_python(self, value: Any) -> Any:
        try:
            result = super().to_python(value)  # type: ignore[misc]
        except OverflowError as exc:  # an ISO value with a zone, moved to the current one
            raise ValidationError(out_of_range_message(), code=CODE) from exc
        if isinstance(result, dt.date) and not is_plausible(result):
            raise ValidationError(out_of_range_message(), code=CODE)
        return result
