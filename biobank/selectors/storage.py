"""Read-side queries for storage: box grids, occupancy and locations, with fixed query counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, F, FilteredRelation, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from biobank.models import Container, ContainerKind, Placement, ProductUnit, StorageUnit
from biobank.models.storage import open_placement_q

SLOT_RESERVED = "checked out, slot reserved"


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
        for p in Placement.objects.open().filter(container=box).select_related("unit")
    }
    columns = range(1, box_type.columns + 1)
    rows = [
        (
            box_type.row_label(r),
            [Cell(r, c, box_type.position_label(r, c), placements.get((r, c))) for c in columns],
        )
        for r in range(1, box_type.rows + 1)
    ]
    column_labels = [box_type.column_label(c) for c in columns]
    return BoxMap(box, column_labels, rows, len(placements), box_type.capacity)


def box_contents(*, box: Container) -> dict[tuple[int | None, int | None], list[tuple[str, bool]]]:
    """What is in a container now, as plain values in one query: (row, column) → the units
    there with whether each is checked out (a box holds one per position; a canister has no
    positions, all its units sit under (None, None)). For answers that need no model objects."""
    held: dict[tuple[int | None, int | None], list[tuple[str, bool]]] = {}
    rows = (
        Placement.objects.open()
        .filter(container=box)
        .order_by("row", "column", "unit__code")
        .values_list("row", "column", "unit__code", "checked_out_at")
    )
    for row, column, code, checked_out_at in rows:
        held.setdefault((row, column), []).append((code, checked_out_at is not None))
    return held


def open_count_per_box() -> Subquery:
    """Open placements of the outer box, counted in a subquery: joining every placement a
    box ever had (ended ones pile up over the years) and grouping made pages slow at scale."""
    counted = (
        Placement.objects.open()
        .filter(container=OuterRef("pk"))
        .order_by()
        .values("container")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(counted), 0)


def boxes_with_occupancy(*, storage_unit: StorageUnit) -> QuerySet[Container]:
    return (
        Container.objects.filter(storage_unit=storage_unit, kind=ContainerKind.BOX)
        .select_related("box_type")
        .annotate(
            used=open_count_per_box(),
            capacity=F("box_type__rows") * F("box_type__columns"),
        )
        .order_by("path")
    )


def units_in(queryset: QuerySet[ProductUnit], *, container_code: str) -> QuerySet[ProductUnit]:
    """The units of ``queryset`` in that container now (a box lists what is in it)."""
    return queryset.filter(
        open_placement_q("placements__"), placements__container__code=container_code
    )


def units_with_location(queryset: QuerySet[ProductUnit]) -> QuerySet[ProductUnit]:
    """Annotate each unit with its current container path and position in one query.

    The open placement is joined (at most one per unit, a unique constraint), which the
    planner handles far better than one correlated subquery per column.
    """
    return queryset.annotate(
        open_placement=FilteredRelation("placements", condition=open_placement_q("placements__")),
        location_container_id=F("open_placement__container_id"),
        location_path=F("open_placement__container__path"),
        location_code=F("open_placement__container__code"),
        location_position=F("open_placement__position"),
        location_checked_out=F("open_placement__checked_out_at"),
    )


def units_sortable_by_location(queryset: QuerySet[ProductUnit]) -> QuerySet[ProductUnit]:
    """Units that can be ordered by ``location_sort`` (their open placement's container path).
    An alias, not a join: counting the list does not pay for it."""
    here = Placement.objects.open().filter(unit=OuterRef("pk")).values("container__path")
    return queryset.alias(location_sort=Subquery(here[:1]))


def units_locate(units: list[ProductUnit]) -> list[ProductUnit]:
    """Give already-read units the place columns of ``units_with_location``, in one query
    for all of them (a list page: its rows only, not a join the whole list is counted through)."""
    found = {
        p.unit_id: p
        for p in Placement.objects.open().filter(unit__in=units).select_related("container")
    }
    for unit in units:
        here = found.get(unit.pk)
        unit.location_container_id = here.container_id if here else None
        unit.location_path = here.container.path if here else None
        unit.location_code = here.container.code if here else None
        unit.location_position = here.position if here else None
        unit.location_checked_out = here.checked_out_at if here else None
    return units


def location_text(
    *, path: str | None, code: str | None, position: str | None, checked_out: datetime | None
) -> str:
    """The one way a unit's place is written: 'path (code) position — checked out, ...'."""
    if not code:
        return ""
    text = f"{path} ({code}) {position or ''}".strip()
    if checked_out:
        text += f" — {SLOT_RESERVED}"
    return text


def location_of(unit: ProductUnit) -> str:
    """Where a unit is now: from ``units_with_location``'s columns when the unit was read
    with them (no query), else one query for its open placement (``units_locate``)."""
    if "location_code" not in unit.__dict__:
        units_locate([unit])
    return location_text(
        path=unit.location_path,
        code=unit.location_code,
        position=unit.location_position,
        checked_out=unit.location_checked_out,
    )
