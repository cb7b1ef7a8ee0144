"""Storage hierarchy and unit placement: place, move, check out/in, remove; suggestions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F, Min, Q

from biobank.identifiers import Kind
from biobank.models import (
    Accepts,
    BoxType,
    Container,
    ContainerKind,
    Labelling,
    Placement,
    ProductUnit,
    Site,
    StorageKind,
    StorageUnit,
    TemperatureReading,
    UnitStatus,
)
from biobank.models.storage import ROW_LETTERS
from biobank.rack_csv import RackCell, RackRead
from biobank.selectors.storage import open_count_per_box, units_with_location

from .errors import ConflictError, ServiceError, TransitionError
from .identifiers import identifier_allocate
from .lifecycle import (
    TRANSITIONS,
    Step,
    check_time,
    rows_update,
    transition_apply,
    transitions_apply_bulk,
)

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
    unit._change_reason = "storage unit created"
    unit._history_user = actor
    unit.save()
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
    container._change_reason = "container created"
    container._history_user = actor
    container.save()
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
                raise ServiceError("A container cannot go inside itself.", field="parent")
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
    container._change_reason = "container moved"
    container._history_user = actor
    container.save()
    for child in container.children.select_related("storage_unit"):
        child.parent = container
        child.storage_unit = container.storage_unit
        _repath(child, actor)


# --- positions -------------------------------------------------------------------------------

_LETTER_NUMBER = re.compile(r"^([A-Z])0*(\d{1,2})$")
_NUMBER_LETTER = re.compile(r"^0*(\d{1,2})([A-Z])$")
_NUMBER_NUMBER = re.compile(r"^0*(\d{1,2})\s*[-:/.,]\s*0*(\d{1,2})$")


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
    elif raw.isdigit() and 1 <= int(raw) <= box_type.capacity:
        number = int(raw) - 1
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
        found = first_free_position(box=box)
        if found is None:
            raise ServiceError(f"Box {box.code} is full.", code="box_full", field="box")
        label = box.box_type.position_label(*found)
        return Suggestion(box, *found, label, f"first free position in {box.name} ({box.code})")
    if storage_unit is None:
        raise ServiceError("Give a box or a storage unit.", field="storage_unit")
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


# --- placement -------------------------------------------------------------------------------
#
# Storing and moving go through one set-based engine, for one unit or a whole box: the checks
# run item by item in list order against an in-memory picture of the occupied positions (so
# the refusals are those of one-by-one placing), then every write is a fixed number of
# statements whatever the number of units (lock, status update, history, events, placements).


@dataclass(frozen=True)
class StoreItem:
    unit: ProductUnit
    position: str | None = None  # None: the first free position of the box


@dataclass(frozen=True)
class MoveItem:
    unit: ProductUnit
    container: Container
    position: str | None = None


@dataclass
class _Slot:
    unit: ProductUnit
    action: str  # store | move
    container: Container
    row: int | None
    col: int | None
    label: str
    current: Placement | None = None
    data: dict[str, Any] | None = None
    reason: str = ""


def _indexed(index: int, exc: ServiceError) -> ServiceError:
    exc.index = index
    return exc


def _open_placement(unit: ProductUnit) -> Placement | None:
    return (
        Placement.objects.open()
        .select_for_update(of=("self",))
        .select_related("container")
        .filter(unit=unit)
        .first()
    )


def _open_placements(units: list[ProductUnit]) -> dict[int, Placement]:
    """The open placements of many units, locked, in one query (unit pk → placement)."""
    rows = (
        Placement.objects.open()
        .select_for_update(of=("self",))
        .select_related("container")
        .filter(unit__in=[u.pk for u in units])
        .order_by("pk")
    )
    return {p.unit_id: p for p in rows}


Occupied = dict[int, dict[tuple[int, int], str]]  # container pk → (row, col) → unit code


def _occupied(containers: list[Container]) -> Occupied:
    """Who holds each position of these boxes now, in one query."""
    taken: Occupied = {c.pk: {} for c in containers}
    rows = (
        Placement.objects.open()
        .filter(container__in=[c.pk for c in containers if c.is_box], row__isnull=False)
        .values_list("container_id", "row", "column", "unit__code")
    )
    for container_id, row, col, code in rows:
        taken[container_id][(row, col)] = code
    return taken


def _plan_slot(
    unit: ProductUnit, container: Container, position: str | None, taken: Occupied
) -> tuple[int | None, int | None, str]:
    """Where ``unit`` goes in ``container``: the refusals of placing one unit."""
    if not container.active or not container.storage_unit.active:
        raise ServiceError(f"{container.code} is not in use.", field="container")
    if not container.is_box:
        if position:
            raise ServiceError(
                f"{container.code} is a {container.kind} without positions.", field="position"
            )
        return None, None, ""
    box_type = container.box_type
    if box_type.accepts not in (Accepts.ANY, unit.container_type):
        raise ServiceError(
            f"{container.code} takes {box_type.get_accepts_display().lower()}, "
            f"not a {unit.container_type}.",
            code="wrong_container_type",
            field="container",
        )
    here = taken[container.pk]
    if position:
        row, col = position_parse(box_type=box_type, label=position)
    else:
        free = (
            (r, c)
            for r in range(1, box_type.rows + 1)
            for c in range(1, box_type.columns + 1)
            if (r, c) not in here
        )
        found = next(free, None)
        if found is None:
            raise ServiceError(f"Box {container.code} is full.", code="box_full", field="container")
        row, col = found
    return row, col, box_type.position_label(row, col)


def _taken_error(container: Container, label: str, holder: str | None) -> ConflictError:
    who = f" by {holder}" if holder else ""
    return ConflictError(
        f"Position {label or '-'} of {container.code} is already taken{who}. "
        "Choose another position.",
        code="position_taken",
        field="position",
    )


def _claim(slot: _Slot, taken: Occupied) -> None:
    """Mark the slot's position as taken (refused if it already is); free the unit's old one."""
    if slot.row is None:
        return
    here = taken[slot.container.pk]
    holder = here.get((slot.row, slot.col))
    if holder is not None:
        raise _taken_error(slot.container, slot.label, holder)
    if slot.current is not None and slot.current.row is not None:
        taken.get(slot.current.container_id, {}).pop((slot.current.row, slot.current.column), None)
    here[(slot.row, slot.col)] = slot.unit.code


def _where(container: Container, label: str) -> str:
    return f"{container.path} {label}".strip()


def _placements_write(
    slots: list[_Slot], *, actor: AbstractBaseUser, at: datetime, end_reason: str
) -> list[Placement]:
    """The writes for planned slots, in a fixed number of statements: the lifecycle steps
    (locked, checked, history, events), the old placements ended, the new ones inserted."""
    transitions_apply_bulk(
        steps=[
            Step(
                item=slot.unit,
                action=slot.action,
                reason=slot.reason,
                site=slot.container.storage_unit.site,
                location=_where(slot.container, slot.label),
                data=slot.data,
            )
            for slot in slots
        ],
        actor=actor,
        at=at,
    )
    _placements_end([s.current for s in slots if s.current], actor=actor, at=at, reason=end_reason)
    placements = [
        Placement(
            unit=slot.unit,
            container=slot.container,
            row=slot.row,
            column=slot.col,
            position=slot.label,
            placed_at=at,
            placed_by=actor,
        )
        for slot in slots
    ]
    try:
        with transaction.atomic():
            Placement.objects.bulk_create(placements)
    except IntegrityError as exc:
        # Taken between our read and our insert (another request): name the holder.
        raise _conflict_after_race(slots) from exc
    for placement in placements:
        placement._change_reason = "placed"
        placement._history_user = actor
    Placement.history.bulk_history_create(placements)
    return placements


def _conflict_after_race(slots: list[_Slot]) -> ServiceError:
    wanted = Q()
    for slot in slots:
        wanted |= Q(container=slot.container, row=slot.row, column=slot.col)
    holders = {
        (p.container_id, p.row, p.column): p.unit.code
        for p in Placement.objects.open().filter(wanted).select_related("unit")
    }
    for index, slot in enumerate(slots):
        holder = holders.get((slot.container.pk, slot.row, slot.col))
        if holder is not None or slot.row is None:
            return _indexed(index, _taken_error(slot.container, slot.label, holder))
    return _indexed(0, _taken_error(slots[0].container, slots[0].label, None))


def _placements_end(
    placements: list[Placement], *, actor: AbstractBaseUser, at: datetime, reason: str | list[str]
) -> None:
    """End open placements (one UPDATE when they share a reason) with their history rows."""
    if not placements:
        return
    reasons = [reason] * len(placements) if isinstance(reason, str) else reason
    for placement, why in zip(placements, reasons, strict=True):
        placement.ended_at = at
        placement.ended_by = actor
        placement.end_reason = why[:200]
        placement._change_reason = why or "placement ended"
        placement._history_user = actor
    rows_update(Placement, placements, ["ended_at", "ended_by_id", "end_reason"])
    Placement.history.bulk_history_create(placements, update=True)


def _box_for_writes(container: Container) -> Container:
    return Container.objects.select_related("box_type", "storage_unit__site").get(pk=container.pk)


@transaction.atomic
def units_store(
    *,
    container: Container,
    items: list[StoreItem],
    actor: AbstractBaseUser,
    at: datetime | None = None,
) -> list[Placement]:
    """Store frozen units into one box (given or first free positions), all or nothing.

    The same refusals as storing them one by one in list order; a refusal carries the item's
    place in the list in ``.index``. The number of queries does not grow with the units.
    """
    when = check_time(at)
    container = _box_for_writes(container)
    taken = _occupied([container])
    slots = []
    for index, item in enumerate(items):
        unit = item.unit
        try:
            if unit.status not in TRANSITIONS["unit"]["store"].sources or any(
                s.unit.pk == unit.pk for s in slots
            ):
                # Say what is wrong with the unit before anything about the box.
                status = UnitStatus.STORED if unit.status == UnitStatus.FROZEN else unit.status
                raise TransitionError(
                    f"Cannot store {unit.code}: it is {status}; only a frozen, unplaced unit "
                    "can be stored (use move for a stored one).",
                    code="invalid_transition",
                    field="unit",
                )
            row, col, label = _plan_slot(unit, container, item.position, taken)
            slot = _Slot(
                unit,
                "store",
                container,
                row,
                col,
                label,
                data={"container": container.code, "position": label},
            )
            _claim(slot, taken)
        except ServiceError as exc:
            raise _indexed(index, exc) from None
        slots.append(slot)
    return _placements_write(slots, actor=actor, at=when, end_reason="")


def unit_place(
    *,
    unit: ProductUnit,
    container: Container,
    actor: AbstractBaseUser,
    position: str | None = None,
    at: datetime | None = None,
) -> Placement:
    """Store a frozen unit: into the given position, or the first free one of a box."""
    return units_store(container=container, items=[StoreItem(unit, position)], actor=actor, at=at)[
        0
    ]


@transaction.atomic
def units_move(
    *,
    items: list[MoveItem],
    actor: AbstractBaseUser,
    reason: str = "",
    at: datetime | None = None,
) -> list[Placement]:
    """Move stored units to other containers or positions, all or nothing, in list order
    (a unit may take a slot that one earlier in the list has just left)."""
    when = check_time(at)
    units = [item.unit for item in items]
    # Lock the units first (one query, one lock order): concurrent moves then queue here and
    # each sees the last one's placement, not a placement it waited for already ended.
    list(
        ProductUnit.objects.select_for_update(of=("self",))
        .filter(pk__in=sorted({u.pk for u in units}))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    current = _open_placements(units)
    targets = Container.objects.select_related("box_type", "storage_unit__site").in_bulk(
        {item.container.pk for item in items}
    )
    taken = _occupied(list(targets.values()))
    slots: list[_Slot] = []
    for index, item in enumerate(items):
        unit, container = item.unit, targets[item.container.pk]
        try:
            before = current.get(unit.pk)
            if before is None or any(s.unit.pk == unit.pk for s in slots):
                raise ServiceError(f"{unit.code} has no place to move from.", field="unit")
            row, col, label = _plan_slot(unit, container, item.position, taken)
            if before.container_id == container.pk and (before.row, before.column) == (row, col):
                # The step is already done (e.g. by a concurrent identical move): a conflict.
                raise ConflictError(
                    f"{unit.code} is already at {label or container.code}.",
                    code="already_there",
                    field="position",
                )
            slot = _Slot(
                unit,
                "move",
                container,
                row,
                col,
                label,
                current=before,
                reason=reason,
                data={
                    "from_container": before.container.code,
                    "from_position": before.position,
                    "container": container.code,
                    "position": label,
                },
            )
            _claim(slot, taken)
        except ServiceError as exc:
            raise _indexed(index, exc) from None
        slots.append(slot)
    return _placements_write(slots, actor=actor, at=when, end_reason="moved")


def unit_move(
    *,
    unit: ProductUnit,
    container: Container,
    actor: AbstractBaseUser,
    position: str | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> Placement:
    return units_move(
        items=[MoveItem(unit, container, position)], actor=actor, reason=reason, at=at
    )[0]


def _end(placement: Placement, *, actor: AbstractBaseUser, at: datetime, reason: str) -> None:
    placement.ended_at = at
    placement.ended_by = actor
    placement.end_reason = reason[:200]
    placement._change_reason = reason or "placement ended"
    placement._history_user = actor
    placement.save()


def unit_check_out(
    *, unit: ProductUnit, actor: AbstractBaseUser, reason: str = "", at: datetime | None = None
) -> Placement:
    """Take a unit out of its slot for a while; the slot stays reserved for its return."""
    return _reserved_slot_step(
        unit=unit,
        action="check_out",
        actor=actor,
        at=at,
        reason=reason,
        history_reason=reason or "checked out",
        missing=f"{unit.code} is not in storage.",
    )


def unit_check_in(
    *, unit: ProductUnit, actor: AbstractBaseUser, at: datetime | None = None
) -> Placement:
    """Return a checked-out unit to its reserved slot."""
    return _reserved_slot_step(
        unit=unit,
        action="check_in",
        actor=actor,
        at=at,
        reason="",
        history_reason="checked in",
        missing=f"{unit.code} has no reserved slot.",
    )


@transaction.atomic
def _reserved_slot_step(
    *,
    unit: ProductUnit,
    action: str,
    actor: AbstractBaseUser,
    at: datetime | None,
    reason: str,
    history_reason: str,
    missing: str,
) -> Placement:
    """Check out or in: the placement stays open either way; only its mark changes."""
    when = check_time(at)
    current = _open_placement(unit)
    if current is None:
        raise ServiceError(missing, field="unit")
    transition_apply(
        item=unit,
        action=action,
        actor=actor,
        at=when,
        reason=reason,
        location=_where(current.container, current.position),
        data={"container": current.container.code, "position": current.position},
    )
    out = action == "check_out"
    current.checked_out_at = when if out else None
    current.checked_out_by = actor if out else None
    current._change_reason = history_reason
    current._history_user = actor
    current.save()
    return current


@transaction.atomic
def unit_remove(
    *, unit: ProductUnit, actor: AbstractBaseUser, reason: str, at: datetime | None = None
) -> ProductUnit:
    """Take a unit out of storage for good (e.g. shipped in a dry shipper); slot is freed."""
    when = check_time(at)
    current = _open_placement(unit)
    transition_apply(item=unit, action="unstore", actor=actor, at=when, reason=reason)
    if current is not None:
        _end(current, actor=actor, at=when, reason=reason)
    return unit


def placement_close(
    *, unit: ProductUnit, actor: AbstractBaseUser, at: datetime, reason: str
) -> None:
    """End the unit's open placement, if any (release, discard). Caller holds the transaction."""
    current = _open_placement(unit)
    if current is not None:
        _end(current, actor=actor, at=at, reason=reason)


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


# --- rack scanner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RackDiff:
    position: str
    row: int
    column: int
    state: str  # match | new | moved_here | mismatch | missing | no_read | empty | bad_tube
    file_tube: str
    system_unit: str
    note: str
    tube_placed: bool = False  # the file's tube has a place in storage now (a move, not a store)


def rack_scan_compare(*, box: Container, read: RackRead) -> list[RackDiff]:
    """Compare a rack-scanner read with what the system believes is in ``box``."""
    box_type = box.box_type
    here = {
        (p.row, p.column): p.unit.code
        for p in Placement.objects.open().filter(container=box).select_related("unit")
    }
    tubes = [c.tube for c in read.cells if c.status == "ok" and c.parsed is not None]
    known = {u.code: u for u in units_with_location(ProductUnit.objects.filter(code__in=tubes))}
    cells = {}
    for cell in read.cells:
        try:
            row, col = position_parse(box_type=box_type, label=cell.position)
        except ServiceError:
            continue
        cells[(row, col)] = cell
    diffs = []
    for row in range(1, box_type.rows + 1):
        for col in range(1, box_type.columns + 1):
            label = box_type.position_label(row, col)
            system = here.get((row, col), "")
            cell = cells.get((row, col))
            state, tube, note = _rack_state(cell, system, known, box)
            placed = tube in known and known[tube].location_container_id is not None
            diffs.append(RackDiff(label, row, col, state, tube, system, note, placed))
    return diffs


def _rack_state(
    cell: RackCell | None, system: str, known: dict[str, ProductUnit], box: Container
) -> tuple[str, str, str]:
    if cell is None or cell.status == "empty":
        if system:
            return "missing", "", "the system has a unit here; the rack shows none"
        return "empty", "", ""
    if cell.status == "no_read":
        return "no_read", "NO READ", "tube present but unreadable: not verified"
    tube = cell.tube or ""
    if cell.parsed is None:
        return "bad_tube", tube, cell.id_error or "not a valid identifier"
    unit = known.get(tube)
    if unit is None:
        return "bad_tube", tube, "no such unit is registered"
    if tube == system:
        return "match", tube, ""
    if system:
        where = f"{unit.location_code} {unit.location_position}".strip()
        there = f"; the system has {tube} in {where}" if where else f"; {tube} is not in storage"
        return "mismatch", tube, f"the system has {system} here{there}"
    if unit.location_container_id is None:
        return "new", tube, f"{unit.get_status_display().lower()}, will be stored here"
    where = f"{unit.location_code} {unit.location_position}".strip()
    if unit.location_container_id == box.pk:
        return "moved_here", tube, f"the system has it at {unit.location_position}"
    return "moved_here", tube, f"the system has it in {where}"


@dataclass(frozen=True)
class RackPlan:
    """What applying a compared rack scan would do; preview and apply both use it."""

    incoming: dict[str, RackDiff]  # tube → its row: stored or moved to the row's position
    displaced: list[RackDiff]  # rows whose system unit leaves storage (missing, or replaced)
    bad: list[RackDiff]  # unknown or invalid tubes: the import cannot be applied
    unchanged: int

    @property
    def blocked(self) -> bool:
        return bool(self.bad)

    @property
    def counts(self) -> dict[str, int]:
        moved = sum(1 for d in self.incoming.values() if d.tube_placed)
        return {
            "stored": len(self.incoming) - moved,
            "moved": moved,
            "removed": len(self.displaced),
            "unchanged": self.unchanged,
        }


def rack_scan_plan(*, diffs: list[RackDiff]) -> RackPlan:
    """The writes a rack scan implies. A mismatch row both brings its tube in and displaces
    the system's unit (unless that unit is read elsewhere in the same rack)."""
    incoming = {d.file_tube: d for d in diffs if d.state in ("new", "moved_here", "mismatch")}
    displaced = [
        d for d in diffs if d.state in ("missing", "mismatch") and d.system_unit not in incoming
    ]
    return RackPlan(
        incoming=incoming,
        displaced=displaced,
        bad=[d for d in diffs if d.state == "bad_tube"],
        unchanged=sum(1 for d in diffs if d.state == "match"),
    )


@transaction.atomic
def rack_scan_apply(
    *,
    box: Container,
    read: RackRead,
    actor: AbstractBaseUser,
    remove_missing: bool = False,
) -> dict[str, int]:
    """Make the system match the rack, all or nothing.

    Tubes read in the file are stored at their positions (placed if unplaced, moved if
    elsewhere). Units the system has in the box but the rack shows as empty, or that are
    displaced by another tube, block the import unless ``remove_missing`` takes them out of
    storage. NO READ positions are left as they are.
    """
    if read.errors:
        raise ServiceError(
            f"The file has {len(read.errors)} problem(s); first: {read.errors[0]}",
            code="bad_file",
            field="file",
        )
    box = (
        Container.objects.select_for_update(of=("self",))
        .select_related("box_type", "storage_unit")
        .get(pk=box.pk)
    )
    diffs = rack_scan_compare(box=box, read=read)
    plan = rack_scan_plan(diffs=diffs)
    if plan.bad:
        listed = ", ".join(f"{d.position} {d.file_tube} ({d.note})" for d in plan.bad[:5])
        raise ServiceError(f"Unknown or invalid tubes: {listed}.", code="bad_tubes", field="file")
    incoming, displaced = plan.incoming, plan.displaced
    if displaced and not remove_missing:
        listed = ", ".join(f"{d.system_unit} at {d.position}" for d in displaced[:5])
        raise ServiceError(
            f"{len(displaced)} unit(s) the system has in {box.code} are not in the rack: {listed}. "
            "Find them, or choose to remove them from storage.",
            code="units_missing",
            field="remove_missing",
        )
    when = check_time(None)
    _units_remove(
        [
            (diff.system_unit, f"Rack scan of {box.code}: not found at {diff.position}")
            for diff in displaced
        ],
        actor=actor,
        at=when,
    )
    units = {u.code: u for u in ProductUnit.objects.filter(code__in=incoming)}
    # Every tube's old slot is freed before any is taken, so tubes can swap places in the box.
    current = _open_placements(list(units.values()))
    slots = []
    for code, diff in incoming.items():
        unit, before = units[code], current.get(units[code].pk)
        data = {"container": box.code, "position": diff.position, "source": "rack scan"}
        if before is not None:
            data = {
                "from_container": before.container.code,
                "from_position": before.position,
                **data,
            }
        slots.append(
            _Slot(
                unit,
                "store" if before is None else "move",
                box,
                diff.row,
                diff.column,
                diff.position,
                current=before,
                data=data,
            )
        )
    _placements_write(slots, actor=actor, at=when, end_reason=f"rack scan of {box.code}")
    stored = sum(1 for slot in slots if slot.action == "store")
    return {
        "stored": stored,
        "moved": len(slots) - stored,
        "removed": len(displaced),
        "unchanged": sum(1 for d in diffs if d.state == "match"),
    }


def _units_remove(
    removals: list[tuple[str, str]], *, actor: AbstractBaseUser, at: datetime
) -> None:
    """``unit_remove`` for many units (code, reason) in a fixed number of statements."""
    if not removals:
        return
    units = {u.code: u for u in ProductUnit.objects.filter(code__in=[c for c, _ in removals])}
    current = _open_placements(list(units.values()))
    transitions_apply_bulk(
        steps=[Step(item=units[code], action="unstore", reason=why) for code, why in removals],
        actor=actor,
        at=at,
    )
    ending = [(current[units[c].pk], why) for c, why in removals if units[c].pk in current]
    _placements_end([p for p, _ in ending], actor=actor, at=at, reason=[why for _, why in ending])
