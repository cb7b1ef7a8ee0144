"""Read-side queries for shipments: manifests, where an item is, what a scan names."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from biobank.identifiers import Kind
from biobank.models import (
    Aspirate,
    Dose,
    LoggerFile,
    ProductUnit,
    Shipment,
    ShipmentItem,
    ShipmentItemState,
    Site,
)

ITEM_MODELS: dict[Kind, tuple[str, Any]] = {
    Kind.ASPIRATE: ("aspirate", Aspirate),
    Kind.UNIT: ("unit", ProductUnit),
    Kind.DOSE: ("dose", Dose),
}
S = ShipmentItemState


def shipments_list() -> QuerySet[Shipment]:
    return (
        Shipment.objects.select_related("from_site", "to_site")
        .annotate(
            item_count=Count("items", filter=~Q(items__state__in=[S.EXTRA, S.REMOVED])),
            missing_count=Count("items", filter=Q(items__state=S.MISSING)),
        )
        .order_by("-created_at", "-id")
    )


def shipment_items(*, shipment: Shipment) -> list[ShipmentItem]:
    """Manifest lines (and extras) with their items, in one query."""
    return list(
        ShipmentItem.objects.filter(shipment=shipment)
        .select_related(
            "aspirate__participant",
            "unit__participant",
            "dose__participant",
            "dose__visit__visit_type",
            "packed_by",
            "received_by",
        )
        .order_by("id")
    )


def logger_files(*, shipment: Shipment) -> list[LoggerFile]:
    return list(LoggerFile.objects.filter(shipment=shipment).order_by("uploaded_at", "id"))


def item_by_code(*, kind: Kind, code: str) -> Any | None:
    """The aspirate, unit or dose with this ID (locked when ``lock``), or None."""
    name, model = ITEM_MODELS[kind]
    return model.objects.select_related("participant").filter(code=code).first()


def item_site(item: Aspirate | ProductUnit | Dose) -> Site | None:
    """Where an item is now: the destination of its last received shipment, else where it
    was made (an aspirate at its collection site; units and doses at the cell lab)."""
    kind = {Aspirate: "aspirate", ProductUnit: "unit", Dose: "dose"}[type(item)]
    last = (
        ShipmentItem.objects.filter(**{kind: item}, state=S.RECEIVED)
        .select_related("shipment__to_site")
        .order_by("-received_at", "-id")
        .first()
    )
    if last is not None:
        return last.shipment.to_site
    if isinstance(item, Aspirate):
        return item.site
    return Site.objects.filter(is_lab=True).order_by("code").first()
