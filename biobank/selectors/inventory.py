"""Inventory: where every stored unit is, counts per participant, one participant's items."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Count, QuerySet

from biobank import visibility
from biobank.models import Participant, Placement, ProductUnit, StorageUnit
from biobank.selectors.audit_export import CHUNK, iso

INVENTORY_COLUMNS = [
    "site",
    "storage_unit",
    "storage_unit_name",
    "location",
    "box",
    "position",
    "unit",
    "participant",
    "pseudonym",
    "status",
    "container_type",
    "checked_out_at",
    "expires_at",
]


def inventory_placements(
    *, storage_unit: StorageUnit | None = None, participant: Participant | None = None
) -> QuerySet[Placement]:
    """Open placements (every stored unit) by storage unit, box and position."""
    qs = Placement.objects.open()
    if storage_unit is not None:
        qs = qs.filter(container__storage_unit=storage_unit)
    if participant is not None:
        qs = qs.filter(unit__participant=participant)
    return qs.order_by(
        "container__storage_unit__site__code",
        "container__storage_unit__name",
        "container__path",
        "row",
        "column",
        "unit__code",
    )


_INVENTORY_VALUES = [
    "container__storage_unit__site__code",
    "container__storage_unit__code",
    "container__storage_unit__name",
    "container__path",
    "container__code",
    "position",
    "unit__code",
    "unit__participant__code",
    "unit__participant__pseudonym",
    "unit__status",
    "unit__container_type",
    "checked_out_at",
    "unit__created_at",
    "unit__participant__study__stored_shelf_life_days",
]


def inventory_rows(
    *, storage_unit: StorageUnit | None = None, participant: Participant | None = None
) -> Iterator[list[Any]]:
    qs = inventory_placements(storage_unit=storage_unit, participant=participant)
    # A stored unit's expiry, by the unit's own rule, from values read with the row.
    for row in qs.values_list(*_INVENTORY_VALUES).iterator(chunk_size=CHUNK):
        yield [*row[:11], iso(row[11]), iso(ProductUnit.expiry_of(row[12], row[13]))]


def inventory_counts() -> list[dict[str, Any]]:
    """Per participant: units stored (open placement), by status, and in total."""
    rows = (
        ProductUnit.objects.values("participant__code", "participant__pseudonym", "status")
        .annotate(n=Count("id"))
        .order_by("participant__pseudonym", "status")
    )
    stored = dict(
        Placement.objects.open()
        .values("unit__participant__code")
        .annotate(n=Count("id"))
        .values_list("unit__participant__code", "n")
    )
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = out.setdefault(
            r["participant__code"],
            {
                "participant": r["participant__code"],
                "pseudonym": r["participant__pseudonym"],
                "stored": stored.get(r["participant__code"], 0),
                "total": 0,
                "by_status": {},
            },
        )
        entry["by_status"][r["status"]] = r["n"]
        entry["total"] += r["n"]
    return list(out.values())


def participant_whereabouts(*, participant: Participant, user: Any) -> dict[str, Any]:
    """ "Where is everything of participant X": aspirates, units (lab only), doses, each
    status as the visibility policy shows it."""
    policy = visibility.policy_for(user)
    out: dict[str, Any] = {
        "participant": participant.code,
        "pseudonym": participant.pseudonym,
        "aspirates": [
            {"code": a.code, "status": policy.status_of("aspirate", a.status), "site": a.site.code}
            for a in participant.aspirates.select_related("site").order_by("collected_at")
        ],
        "doses": [
            {"code": d.code, "status": d.status, "visit": d.visit.visit_type.code}
            for d in participant.doses.select_related("visit__visit_type").order_by("code")
        ],
    }
    if policy.sees("unit"):
        placed = {
            row[6]: row
            for row in inventory_placements(participant=participant).values_list(*_INVENTORY_VALUES)
        }
        out["units"] = [
            {
                "code": u.code,
                "status": u.status,
                "storage_unit": placed[u.code][1] if u.code in placed else "",
                "location": placed[u.code][3] if u.code in placed else "",
                "box": placed[u.code][4] if u.code in placed else "",
                "position": placed[u.code][5] if u.code in placed else "",
            }
            for u in participant.units.order_by("code")
        ]
    return out
