"""Who may see allocation (arm) and product identity (MSC or saline)."""

from __future__ import annotations

from typing import Any

ALLOCATION_PERMISSION = "biobank.view_allocation"


def can_see_allocation(user: Any) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(ALLOCATION_PERMISSION))
