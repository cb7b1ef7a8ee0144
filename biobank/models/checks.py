"""Check constraints that recur across the models, each named by the rule it states."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


def choice_check(field: str, choices: type[models.Choices], *, name: str) -> models.CheckConstraint:
    """``field`` holds one of the values of ``choices``."""
    return models.CheckConstraint(condition=models.Q(**{f"{field}__in": choices.values}), name=name)


def range_check(
    field: str, low: int | Decimal, high: int | Decimal, *, name: str, optional: bool = False
) -> models.CheckConstraint:
    """``low ≤ field ≤ high``; with ``optional``, ``field`` may also be empty (null)."""
    within = models.Q(**{f"{field}__gte": low, f"{field}__lte": high})
    if optional:
        within = models.Q(**{f"{field}__isnull": True}) | within
    return models.CheckConstraint(condition=within, name=name)


def positive_check(field: str, *, name: str, optional: bool = False) -> models.CheckConstraint:
    """``field > 0``; with ``optional``, ``field`` may also be empty (null)."""
    positive = models.Q(**{f"{field}__gt": 0})
    if optional:
        positive = models.Q(**{f"{field}__isnull": True}) | positive
    return models.CheckConstraint(condition=positive, name=name)
