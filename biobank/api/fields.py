"""Input fields and query filters held to the plausible years (``biobank.moments``).

A year-1 or year-9999 value cannot be made aware or moved to UTC without overflowing: these
refuse it first, as a 400 naming the field or query parameter.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django_filters import fields as filter_fields
from django_filters import rest_framework as filters
from rest_framework import serializers

from biobank.moments import CODE, PlausibleFormField, is_plausible, out_of_range_message


class PlausibleDateTimeField(serializers.DateTimeField):
    """A request body's date-time (the catalogue's ``datetime`` inputs), checked before it is
    made aware."""

    def enforce_timezone(self, value: Any) -> Any:
        if not is_plausible(value):
            raise serializers.ValidationError(out_of_range_message(self.field_name), code=CODE)
        return super().enforce_timezone(value)


class _PlausibleIsoDateTimeFormField(PlausibleFormField, filter_fields.IsoDateTimeField):
    pass


class _PlausibleDateFormField(PlausibleFormField, forms.DateField):
    pass


class PlausibleIsoDateTimeFilter(filters.IsoDateTimeFilter):
    """A date-time query parameter (``?after=``): out of the bound it is a 400 naming it."""

    field_class = _PlausibleIsoDateTimeFormField


class PlausibleDateFilter(filters.DateFilter):
    """A date query parameter (``?scheduled_after=``), held to the same bound."""

    field_class = _PlausibleDateFormField
