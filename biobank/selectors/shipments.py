"""Read-side queries for shipments: manifests, where an item is, what a scan names."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from biobank.identifiers import Kind
from biobank.labels import get_template, render
from biobank.labels.shipping import render_manifest_pdf, render_trace_svg, shipper_label_content
from biobank.logger_csv import parse_logger_csv
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
from biobank.terms import BLINDED_PRODUCT, millions
from biobank.visibility import kind_of_model

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


def item_site(item: Aspirate | ProductUnit | Dose) -> Site | None:
    """Where an item is now: the destination of its last received shipment, else where it
    was made (an aspirate at its collection site; units and doses at the cell lab)."""
    kind = kind_of_model(item)
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


def _describe(line: ShipmentItem, user: Any) -> str:
    """What the item is, in words this user may read (doses stay blinded)."""
    from biobank.visibility import can_see_allocation

    if line.dose_id:
        if can_see_allocation(user):
            return f"Dose: {line.dose.get_treatment_display()}"
        return f"Dose: {BLINDED_PRODUCT}"
    if line.unit_id:
        unit = line.unit
        return f"{unit.get_container_type_display()}, {millions(unit.cell_number)} cells"
    if line.aspirate_id:
        return f"Bone-marrow aspirate, {line.aspirate.volume_ml} mL"
    return "Not registered here"


def manifest_rows(*, shipment: Shipment, user: Any) -> list[dict[str, Any]]:
    """The manifest as this user may see it: rows of kinds the visibility policy hides from
    them (e.g. product units for blinded roles) are left out entirely."""
    from biobank.visibility import may_see_kind

    rows = []
    for line in shipment_items(shipment=shipment):
        if line.item_kind in ITEM_KINDS and not may_see_kind(user, line.item_kind):
            continue
        item = line.item
        rows.append(
            {
                "code": line.item_code,
                "kind": line.item_kind,
                "participant": item.participant.pseudonym if item is not None else "",
                "description": _describe(line, user),
                "state": line.state,
                "state_display": line.get_state_display(),
                "damaged": line.damaged,
                "note": line.note,
                "packed_at": line.packed_at,
                "received_at": line.received_at,
            }
        )
    return rows


ITEM_KINDS = frozenset(name for name, _ in ITEM_MODELS.values())


# --- documents (the API and the admin pages serve the same bytes) ---------------------------


def manifest_pdf(shipment: Shipment, user: Any) -> bytes:
    from biobank.visibility import can_see_allocation

    blinded = not can_see_allocation(user)
    low, high = shipment.temperature_range
    header = [
        ("Shipment", f"{shipment.code} — {shipment.label}"),
        ("From", str(shipment.from_site)),
        ("To", str(shipment.to_site)),
        ("Kind", f"{shipment.get_kind_display()}; must stay within {low} … {high} °C"),
        ("Shipper / logger", f"{shipment.shipper_id or '—'} / {shipment.logger_serial or '—'}"),
        ("Courier / tracking", f"{shipment.courier or '—'} / {shipment.tracking_ref or '—'}"),
        ("Status", shipment.get_status_display()),
    ]
    if shipment.manifest_digest:
        header.append(("Manifest SHA-256", shipment.manifest_digest))
    footer = str(shipment.seal_signature) if shipment.seal_signature_id else "Not sealed yet."
    title = f"Shipment manifest {shipment.code}" + (" (blinded)" if blinded else "")
    return render_manifest_pdf(
        title=title, header=header, rows=manifest_rows(shipment=shipment, user=user), footer=footer
    )


def shipper_label(shipment: Shipment, fmt: str) -> bytes:
    content = shipper_label_content(
        code=shipment.code,
        from_site=shipment.from_site.code,
        to_site=shipment.to_site.code,
        kind=shipment.get_kind_display(),
        shipper_id=shipment.shipper_id,
        logger_serial=shipment.logger_serial,
    )
    return render(content, get_template("shipper"), fmt)


def trace_chart(shipment: Shipment) -> tuple[bytes, str] | None:
    """(SVG, alt text) of the latest logger file, or None."""
    from biobank.labels.shipping import Trace, trace_alt_text

    files = logger_files(shipment=shipment)
    if not files:
        return None
    logger = files[-1]
    readings = parse_logger_csv(logger.content, default_tz=settings.TIME_ZONE)
    low, high = shipment.temperature_range
    times, temperatures = [r.at for r in readings], [r.temperature_c for r in readings]
    trace = Trace(times, temperatures, low, high, tz=timezone.get_default_timezone())
    title = f"{shipment.code} logger {shipment.logger_serial or logger.filename}"
    svg = render_trace_svg(trace, title=title)
    alt = trace_alt_text(trace, excursion=logger.excursion.get("text", ""))
    return svg, alt
