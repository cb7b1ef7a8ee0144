"""The visibility policy: the one place that decides who may see what.

Every surface (admin, API, scan resolver, labels, print jobs, events, reports, exports) asks
this module; none decides blinding on its own. Blinded roles (clinicians, monitors, outcome
assessors) may see participants, visits, aspirates and doses, never the lab's product records
(units, processings, freezing runs, placements, QC, post-thaw figures) nor allocation.
"""

from __future__ import annotations

from typing import Any

ALLOCATION_PERMISSION = "biobank.view_allocation"

# The product name on anything a blinded person sees (EU CTR 536/2014 Annex VI).
BLINDED_PRODUCT = "MSC or 0.9 % NaCl"

# Item kinds whose mere existence or state carries nothing about the arm.
BLINDED_SAFE_KINDS: frozenset[str] = frozenset(
    {"study", "site", "participant", "visit", "aspirate", "dose", "shipment"}
)


def can_see_allocation(user: Any) -> bool:
    """True for the unblinded roles (cell lab, QA/release, administrators)."""
    return bool(user and user.is_authenticated and user.has_perm(ALLOCATION_PERMISSION))


def may_see_kind(user: Any, kind: str) -> bool:
    """May this user see items of this kind at all (scan, label, list, detail, report)?"""
    if not (user and user.is_authenticated):
        return False
    return kind in BLINDED_SAFE_KINDS or can_see_allocation(user)
