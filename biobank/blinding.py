"""Kept for imports written before the visibility policy; see ``biobank.visibility``."""

from biobank.visibility import ALLOCATION_PERMISSION, can_see_allocation

__all__ = ["ALLOCATION_PERMISSION", "can_see_allocation"]
