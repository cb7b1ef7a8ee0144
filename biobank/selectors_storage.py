"""Read-side queries for storage: box grids, occupancy and locations, with fixed query counts."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery

from biobank.models import Container, ContainerKind, Placement, ProductUnit, StorageUnit


@dataclass
class Cell:
    row: int
    column: int
    label: str
    placement: Placement | None


@dataclass
class BoxMap:
    box: Container
    column_labels: list[str]
    rows: list[tuple[str, list[Cell]]]
    used: int
    capacity: int


def box_map(*, box: Container) -> BoxMap:
    """The grid of one box: two queries whatever the box size (box type is pre-joined)."""
    box_type = box.box_type
    placements = {
        (p.row, p.column): p
        for p in Placement.objects.filter(container=box, ended_at__isnull=True).select_related(
            "unit"
        )
    }
    rows = []
    for r in range(1, box_type.rows + 1):
        cells = [
            Cell(r, c, box_type.position_label(r, c), placements.get((r, c)))
            for c in range(1, box_type.columns + 1)
        ]
        rows.append((box_type.position_label(r, 1).rstrip("0123456789-") or str(r), cells))
    column_labels = [str(c) for c in range(1, box_type.columns + 1)]
    if box_type.column_labelling == "letters":
        column_labels = [chr(64 + c) for c in range(1, box_type.columns + 1)]
    return BoxMap(box, column_labels, rows, len(placements), box_type.capacity)


def boxes_with_occupancy(*, storage_unit: StorageUnit) -> QuerySet[Container]:
    return (
        Container.objects.filter(storage_unit=storage_unit, kind=ContainerKind.BOX)
        .select_related("box_type")
        .annotate(
            used=Count("placements", filter=Q(placements__ended_at__isnull=True)),
            capacity=F("box_type__rows") * F("box_type__columns"),
        )
        .order_by("path")
    )


def units_with_location(queryset: QuerySet[ProductUnit]) -> QuerySet[ProductUnit]:
    """Annotate each unit with its current container path and position in one query."""
    current = Placement.objects.filter(unit=OuterRef("pk"), ended_at__isnull=True)
    return queryset.annotate(
        location_container_id=Subquery(current.values("container_id")[:1]),
        location_path=Subquery(current.values("container__path")[:1]),
        location_code=Subquery(current.values("container__code")[:1]),
        location_position=Subquery(current.values("position")[:1]),
        location_checked_out=Subquery(current.values("checked_out_at")[:1]),
    )


def location_of(unit: ProductUnit) -> str:
    placement = (
        Placement.objects.filter(unit=unit, ended_at__isnull=True)
        .select_related("container")
        .first()
    )
    if placement is None:
        return ""
    text = f"{placement.container.path} ({placement.container.code}) {placement.position}"
    if placement.checked_out_at:
        text += " — checked out, slot reserved"
    return text.strip()
