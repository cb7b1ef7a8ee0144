"""The storage hierarchy (storage units, containers, boxes), box positions, where to put a
unit next, and storage temperatures."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Min, Q

from biobank.errors import ServiceError
from biobank.identifiers import Kind
from biobank.models import (
    FROZEN_PRODUCT_MAX_C,
    Accepts,
    BoxType,
    Container,
    ContainerKind,
    Labelling,
    Placement,
    Site,
    StorageKind,
    StorageUnit,
    TemperatureReading,
)
from biobank.models.storage import ROW_LETTERS
from biobank.numbers import ascii_int
from biobank.selectors.storage import open_count_per_box

from .audit import history_save
from .identifiers import identifier_allocate
from .time_order import check_time

SEPARATOR = " › "


# --- hierarchy -------------------------------------------------------------------------------


@transaction.atomic
def storage_unit_create(
    *,
    site: Site,
    name: str,
    kind: str,
    min_temperature_c: Decimal,
    max_temperature_c: Decimal,
    actor: AbstractBaseUser,
) -> StorageUnit:
    name = name.strip()
    if not name:
        raise ServiceError("A name is required.", field="name")
    if kind not in StorageKind.values:
        raise ServiceError(f"Kind must be one of {', '.join(StorageKind.values)}.", field="kind")
    low, high = Decimal(str(min_temperature_c)), Decimal(str(max_temperature_c))
    if low >= high:
        raise ServiceError(
            "The minimum temperature must be below the maximum.", field="min_temperature_c"
        )
    if StorageUnit.objects.filter(site=site, name=name).exists():
        raise ServiceError(f"{site.code} already has a storage unit named {name}.", field="name")
    unit = StorageUnit(
        code=identifier_allocate(kind=Kind.STORAGE_UNIT),
        site=site,
        name=name,
        kind=kind,
        min_temperature_c=low,
        max_temperature_c=high,
    )
    history_save(unit, actor=actor, reason="storage unit created")
    return unit


@transaction.atomic
def container_create(
    *,
    name: str,
    kind: str,
    actor: AbstractBaseUser,
    storage_unit: StorageUnit | None = None,
    parent: Container | None = None,
    box_type: BoxType | None = None,
) -> Container:
    """A rack/canister/shelf/drawer (CT…) or a box (BX…) in a storage unit or container."""
    name = name.strip()
    if not name:
        raise ServiceError("A name is required.", field="name")
    if kind not in ContainerKind.values:
        raise ServiceError(f"Kind must be one of {', '.join(ContainerKind.values)}.", field="kind")
    if kind == ContainerKind.BOX and box_type is None:
        raise ServiceError("A box needs a box type (its rows and columns).", field="box_type")
    if kind != ContainerKind.BOX and box_type is not None:
        raise ServiceError("Only boxes have a box type.", field="box_type")
    if parent is not None:
        if parent.is_box:
            raise ServiceError(f"{parent.code} is a box; boxes hold units only.", field="parent")
        if storage_unit is not None and storage_unit.pk != parent.storage_unit_id:
            raise ServiceError("The parent is in another storage unit.", field="parent")
        storage_unit = parent.storage_unit
    if storage_unit is None:
        raise ServiceError("Give a storage unit or a parent container.", field="storage_unit")
    if Container.objects.filter(storage_unit=storage_unit, parent=parent, name=name).exists():
        raise ServiceError(f"'{name}' already exists there.", code="duplicate", field="name")
    container = Container(
        code=identifier_allocate(kind=Kind.BOX if kind == ContainerKind.BOX else Kind.CONTAINER),
        storage_unit=storage_unit,
        parent=parent,
        kind=kind,
        name=name,
        box_type=box_type,
        path=_path(storage_unit, parent, name),
        depth=0 if parent is None else parent.depth + 1,
    )
    history_save(container, actor=actor, reason="container created")
    return container


def _path(storage_unit: StorageUnit, parent: Container | None, name: str) -> str:
    base = parent.path if parent else f"{storage_unit.site.code}{SEPARATOR}{storage_unit.name}"
    return f"{base}{SEPARATOR}{name}"


@transaction.atomic
def container_move(
    *,
    container: Container,
    actor: AbstractBaseUser,
    parent: Container | None = None,
    storage_unit: StorageUnit | None = None,
) -> Container:
    """Move a container (with everything in it) under another parent or storage unit."""
    container = Container.objects.select_for_update(of=("self",)).get(pk=container.pk)
    if parent is not None:
        if parent.is_box:
            raise ServiceError(f"{parent.code} is a box; boxes hold units only.", field="parent")
        ancestor: Container | None = parent
        while ancestor is not None:
            if ancestor.pk == container.pk:
                raise ServiceError(
                    "A container cannot go inside itself.", code="container_cycle", field="parent"
                )
            ancestor = ancestor.parent
        storage_unit = parent.storage_unit
    if storage_unit is None:
        raise ServiceError("Give a new parent or a storage unit.", field="parent")
    clash = Container.objects.filter(storage_unit=storage_unit, parent=parent, name=container.name)
    if clash.exclude(pk=container.pk).exists():
        raise ServiceError(f"'{container.name}' already exists there.", field="parent")
    container.parent = parent
    container.storage_unit = storage_unit
    _repath(container, actor)
    return container


def _repath(container: Container, actor: AbstractBaseUser) -> None:
    container.path = _path(container.storage_unit, container.parent, container.name)
    container.depth = 0 if container.parent is None else container.parent.depth + 1
    history_save(container, actor=actor, reason="container moved")
    for child in container.children.select_related("storage_unit"):
        child.parent = container
        child.storage_unit = container.storage_unit
        _repath(child, actor)


# --- positions -------------------------------------------------------------------------------

# ASCII digits only ([0-9]; \d would take "٣" too).
_LETTER_NUMBER = re.compile(r"^([A-Z])0*([0-9]{1,2})$")
_NUMBER_LETTER = re.compile(r"^0*([0-9]{1,2})([A-Z])$")
_NUMBER_NUMBER = re.compile(r"^0*([0-9]{1,2})\s*[-:/.,]\s*0*([0-9]{1,2})$")


def position_parse(*, box_type: BoxType, label: str) -> tuple[int, int]:
    """'A1', 'a01', '3-7' or a running number '15' (row by row) → (row, column), 1-based."""
    raw = (label or "").strip().upper()
    row = col = None
    if m := _LETTER_NUMBER.match(raw):
        if box_type.row_labelling == Labelling.LETTERS:
            row, col = ROW_LETTERS.index(m.group(1)) + 1, int(m.group(2))
    elif m := _NUMBER_LETTER.match(raw):
        if box_type.column_labelling == Labelling.LETTERS:
            row, col = int(m.group(1)), ROW_LETTERS.index(m.group(2)) + 1
    elif m := _NUMBER_NUMBER.match(raw):
        row, col = int(m.group(1)), int(m.group(2))
    elif (number := ascii_int(raw)) is not None and 1 <= number <= box_type.capacity:
        number -= 1
        row, col = number // box_type.columns + 1, number % box_type.columns + 1
    last = box_type.position_label(box_type.rows, box_type.columns)
    if row is None or col is None:
        raise ServiceError(
            f"'{label}' is not a position of a {box_type}: use e.g. "
            f"{box_type.position_label(1, 1)}…{last} or 1…{box_type.capacity}.",
            code="bad_position",
            field="position",
        )
    if not (1 <= row <= box_type.rows and 1 <= col <= box_type.columns):
        raise ServiceError(
            f"Position {label} is outside this {box_type.rows}×{box_type.columns} box "
            f"({box_type.position_label(1, 1)}…{last}).",
            code="bad_position",
            field="position",
        )
    return row, col


@dataclass(frozen=True)
class Suggestion:
    box: Container
    row: int
    column: int
    position: str
    reason: str


def _accepts(container_type: str | None) -> Q:
    if container_type is None:
        return Q()
    return Q(box_type__accepts__in=[Accepts.ANY, container_type])


def first_free_position(*, box: Container) -> tuple[int, int] | None:
    """The first free position in row order, computed in SQL (two small queries)."""
    box_type = box.box_type
    cols, capacity = box_type.columns, box_type.capacity
    open_ = Placement.objects.open().filter(container=box, row__isnull=False)
    indexed = open_.annotate(idx=(F("row") - 1) * cols + F("column") - 1)
    if not open_.filter(row=1, column=1).exists():
        index = 0
    else:
        # The first free index follows some occupied one: min(idx + 1) not itself occupied.
        index = (
            indexed.annotate(nxt=F("idx") + 1)
            .filter(nxt__lt=capacity)
            .exclude(nxt__in=indexed.values("idx"))
            .aggregate(first=Min("nxt"))["first"]
        )
    if index is None:
        return None
    return index // cols + 1, index % cols + 1


def cold_chain_check(storage_unit: StorageUnit, *, where: str, field: str) -> None:
    """A cryopreserved unit goes only where it stays at ≤ −150 °C (vapour-phase LN2): never a
    −80 °C freezer or a fridge (``StorageUnit.keeps_frozen_product``). ``where`` names the box
    or storage unit asked for."""
    if not storage_unit.keeps_frozen_product():
        unit = f"{storage_unit.name} ({storage_unit.code})"
        kept = f"{storage_unit.min_temperature_c:.1f} … {storage_unit.max_temperature_c:.1f} °C"
        place = f"{unit} is" if where == storage_unit.code else f"{where} is in {unit},"
        raise ServiceError(
            f"{place} kept at {kept}; a cryopreserved unit must be stored at "
            f"≤ {FROZEN_PRODUCT_MAX_C} °C (vapour-phase LN2).",
            code="too_warm",
            field=field,
        )


def free_position_suggest(
    *,
    box: Container | None = None,
    storage_unit: StorageUnit | None = None,
    container_type: str | None = None,
) -> Suggestion:
    """First free position in a box, or in the fullest box with space in a storage unit."""
    if box is not None:
        if not box.is_box:
            raise ServiceError(f"{box.code} is not a box.", field="box")
        cold_chain_check(box.storage_unit, where=box.code, field="box")
        found = first_free_position(box=box)
        if found is None:
            raise ServiceError(f"Box {box.code} is full.", code="box_full", field="box")
        label = box.box_type.position_label(*found)
        return Suggestion(box, *found, label, f"first free position in {box.name} ({box.code})")
    if storage_unit is None:
        raise ServiceError("Give a box or a storage unit.", field="storage_unit")
    cold_chain_check(storage_unit, where=storage_unit.code, field="storage_unit")
    rows = (
        Container.objects.filter(storage_unit=storage_unit, kind=ContainerKind.BOX, active=True)
        .filter(_accepts(container_type))
        .annotate(
            used=open_count_per_box(),
            capacity=F("box_type__rows") * F("box_type__columns"),
        )
        .values_list("pk", "used", "capacity", "path")
    )
    with_space = [row for row in rows if row[1] < row[2]]
    if not with_space:
        kind = f" for {container_type}s" if container_type else ""
        raise ServiceError(
            f"No box with free space{kind} in {storage_unit.name} ({storage_unit.code}).",
            code="storage_full",
            field="storage_unit",
        )
    pk, used, capacity, _ = min(with_space, key=lambda r: (-r[1], r[3], r[0]))
    best = Container.objects.select_related("box_type").get(pk=pk)
    best.used, best.capacity = used, capacity
    found = first_free_position(box=best)
    assert found is not None  # used < capacity
    label = best.box_type.position_label(*found)
    reason = (
        f"fullest box with space in {storage_unit.name}: {best.name} ({best.code}), "
        f"{best.used}/{best.capacity} used; first free position {label}"
    )
    return Suggestion(best, *found, label, reason)


# --- temperature -----------------------------------------------------------------------------


@transaction.atomic
def temperature_record(
    *,
    storage_unit: StorageUnit,
    temperature_c: Decimal | float | str,
    actor: AbstractBaseUser,
    at: datetime | None = None,
    source: str = "manual",
    note: str = "",
) -> TemperatureReading:
    try:
        value = Decimal(str(temperature_c))
    except InvalidOperation as exc:
        raise ServiceError("Temperature must be a number (°C).", field="temperature_c") from exc
    if not value.is_finite() or not (Decimal(-273) < value < Decimal(100)):
        raise ServiceError("Temperature must be between -273 and 100 °C.", field="temperature_c")
    when = check_time(at)
    if TemperatureReading.objects.filter(storage_unit=storage_unit, at=when).exists():
        raise ServiceError("A reading at that time is already recorded.", field="at")
    return TemperatureReading.objects.create(
        storage_unit=storage_unit,
        at=when,
        temperature_c=value,
        out_of_range=not (
            storage_unit.min_temperature_c <= value <= storage_unit.max_temperature_c
        ),
        source=source[:50] or "manual",
        recorded_by=actor,
        note=note[:200],
    )
