"""Unit placement: store, move, check out and in, remove from storage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q

from biobank.errors import ConflictError, ServiceError, TransitionError
from biobank.models import (
    Accepts,
    Container,
    Placement,
    ProductUnit,
    UnitStatus,
)

from .audit import history_save
from .containers import cold_chain_check, position_parse
from .lifecycle import TRANSITIONS, Step, rows_update, transition_apply, transitions_apply_bulk
from .time_order import check_time

# --- placement -------------------------------------------------------------------------------
#
# Storing and moving go through one set-based engine, for one unit or a whole box: the checks
# run item by item in list order against an in-memory picture of the occupied positions (so
# the refusals are those of one-by-one placing), then every write is a fixed number of
# statements whatever the number of units (lock, status update, history, events, placements).

ItemT = TypeVar("ItemT")


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
class Slot:
    unit: ProductUnit
    action: str  # store | move
    container: Container
    row: int | None
    col: int | None
    label: str
    current: Placement | None = None
    data: dict[str, Any] | None = None
    reason: str = ""


def slot_make(
    unit: ProductUnit,
    container: Container,
    row: int | None,
    col: int | None,
    label: str,
    *,
    before: Placement | None = None,
    reason: str = "",
    **extra: str,
) -> Slot:
    """A planned placement: a store when the unit has no place (``before``), else a move; its
    event names the new place and, for a move, the old one. Every placement is planned here
    (store, bulk store, move, put, rack import), so the cold chain is checked here."""
    cold_chain_check(container.storage_unit, where=container.code, field="container")
    data = {"container": container.code, "position": label, **extra}
    if before is not None:
        data = {"from_container": before.container.code, "from_position": before.position, **data}
    action = "store" if before is None else "move"
    return Slot(unit, action, container, row, col, label, before, data, reason)


def _slots_plan(
    items: Sequence[ItemT], plan: Callable[[ItemT, set[int]], Slot], taken: Occupied
) -> list[Slot]:
    """Plan the items in list order against the occupied positions: the refusals of placing
    them one by one, each carrying its item's place in the list (``.index``). ``plan`` gets
    the pks of the units planned so far (a set: a 96-unit box is not 96² comparisons)."""
    slots: list[Slot] = []
    planned: set[int] = set()
    for index, item in enumerate(items):
        try:
            slot = plan(item, planned)
            _claim(slot, taken)
        except ServiceError as exc:
            raise _indexed(index, exc) from None
        slots.append(slot)
        planned.add(slot.unit.pk)
    return slots


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


def open_placements_lock(units: list[ProductUnit]) -> dict[int, Placement]:
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
                f"{container.code} is a {container.kind} without positions.",
                code="no_positions",
                field="position",
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
        found = next((rc for rc in box_type.positions() if rc not in here), None)
        if found is None:
            raise ServiceError(f"Box {container.code} is full.", code="box_full", field="container")
        row, col = found
    return row, col, box_type.position_label(row, col)


class PositionTaken(ConflictError):
    """The position already holds a unit (named when known)."""

    def __init__(self, container: Container, label: str, holder: str | None) -> None:
        who = f" by {holder}" if holder else ""
        super().__init__(
            f"Position {label or '-'} of {container.code} is already taken{who}. "
            "Choose another position.",
            code="position_taken",
            field="position",
        )


def _claim(slot: Slot, taken: Occupied) -> None:
    """Mark the slot's position as taken (refused if it already is); free the unit's old one."""
    if slot.row is None:
        return
    here = taken[slot.container.pk]
    holder = here.get((slot.row, slot.col))
    if holder is not None:
        raise PositionTaken(slot.container, slot.label, holder)
    if slot.current is not None and slot.current.row is not None:
        taken.get(slot.current.container_id, {}).pop((slot.current.row, slot.current.column), None)
    here[(slot.row, slot.col)] = slot.unit.code


def _where(container: Container, label: str) -> str:
    return f"{container.path} {label}".strip()


def slots_write(
    slots: list[Slot], *, actor: AbstractBaseUser, at: datetime, end_reason: str
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


def _conflict_after_race(slots: list[Slot]) -> ServiceError:
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
            return _indexed(index, PositionTaken(slot.container, slot.label, holder))
    return _indexed(0, PositionTaken(slots[0].container, slots[0].label, None))


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

    def plan(item: StoreItem, planned: set[int]) -> Slot:
        unit = item.unit
        twice = unit.pk in planned
        if twice or unit.status not in TRANSITIONS["unit"]["store"].sources:
            # Say what is wrong with the unit before anything about the box.
            status = UnitStatus.STORED if twice else unit.status
            raise TransitionError(
                f"Cannot store {unit.code}: it is {status}; only a frozen, unplaced unit "
                "can be stored (use move for a stored one).",
                code="invalid_transition",
                field="unit",
            )
        return slot_make(unit, container, *_plan_slot(unit, container, item.position, taken))

    return slots_write(_slots_plan(items, plan, taken), actor=actor, at=when, end_reason="")


def unit_store(
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
    current = open_placements_lock(units)
    targets = Container.objects.select_related("box_type", "storage_unit__site").in_bulk(
        {item.container.pk for item in items}
    )
    taken = _occupied(list(targets.values()))

    def plan(item: MoveItem, planned: set[int]) -> Slot:
        unit, container = item.unit, targets[item.container.pk]
        before = current.get(unit.pk)
        if before is None or unit.pk in planned:
            raise ServiceError(f"{unit.code} has no place to move from.", field="unit")
        row, col, label = _plan_slot(unit, container, item.position, taken)
        if before.container_id == container.pk and (before.row, before.column) == (row, col):
            # The step is already done (e.g. by a concurrent identical move): a conflict.
            raise ConflictError(
                f"{unit.code} is already at {label or container.code}.",
                code="already_there",
                field="position",
            )
        return slot_make(unit, container, row, col, label, before=before, reason=reason)

    return slots_write(_slots_plan(items, plan, taken), actor=actor, at=when, end_reason="moved")


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


@dataclass(frozen=True)
class Put:
    """Where a unit scanned into a box went: stored (it had no place) or moved from ``before``."""

    placement: Placement
    action: str  # store | move
    before: Placement | None = None


@transaction.atomic
def unit_put(
    *,
    unit: ProductUnit,
    container: Container,
    actor: AbstractBaseUser,
    position: str | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> Put:
    """Put a unit into a box (given or first free position), whatever its place now: a frozen,
    unplaced unit is stored, a stored or quarantined one moved (with ``reason``). A unit in
    any other state is refused (``not_storable``)."""
    status = (
        ProductUnit.objects.select_for_update(of=("self",)).values_list("status", flat=True)
    ).get(pk=unit.pk)
    if status in TRANSITIONS["unit"]["store"].sources:
        placement = unit_store(
            unit=unit, container=container, position=position, actor=actor, at=at
        )
        return Put(placement, "store")
    before = _open_placement(unit)
    if before is None or status not in TRANSITIONS["unit"]["move"].sources:
        raise TransitionError(
            f"{unit.code} is {UnitStatus(status).label.lower()}: it cannot be stored.",
            code="not_storable",
            field="unit",
        )
    placement = unit_move(
        unit=unit, container=container, position=position, actor=actor, reason=reason, at=at
    )
    return Put(placement, "move", before)


@transaction.atomic
def unit_put_undo(
    *, unit: ProductUnit, actor: AbstractBaseUser, at: datetime | None = None
) -> Placement | None:
    """Undo the unit's last step when it was a store or a move (put into the wrong box): a
    stored unit is taken back out of storage (frozen, unplaced; None), a moved one goes back
    to the place it came from (its placement). Any later step makes it ``nothing_to_undo``."""
    last = unit.events.order_by("-at", "-id").values_list("action", "data").first()
    if last is None or last[0] not in ("store", "move"):
        step = f"its last step is {last[0].replace('_', ' ')}" if last else "it has no steps"
        raise TransitionError(
            f"{unit.code}: {step}, not a store or a move; nothing to undo.",
            code="nothing_to_undo",
            field="unit",
        )
    action, data = last
    if action == "store":
        unit_remove(
            unit=unit,
            actor=actor,
            reason=f"Undo: stored at {data.get('position', '')} by mistake",
            at=at,
        )
        return None
    back = Container.objects.select_related("box_type", "storage_unit").get(
        code=data["from_container"]
    )
    return unit_move(
        unit=unit,
        container=back,
        position=data.get("from_position") or None,
        actor=actor,
        reason="Undo: moved by mistake",
        at=at,
    )


# What check-out and check-in write to the placement's history, and how each refuses a unit
# that does not have the slot it needs.
_RESERVED_SLOT_WORDS = {
    "check_out": ("checked out", "{code} is not in storage.", "not_stored"),
    "check_in": ("checked in", "{code} has no reserved slot.", "slot_not_reserved"),
}


def unit_check_out(
    *, unit: ProductUnit, actor: AbstractBaseUser, reason: str = "", at: datetime | None = None
) -> Placement:
    """Take a unit out of its slot for a while; the slot stays reserved for its return."""
    return _reserved_slot_step(unit=unit, action="check_out", actor=actor, at=at, reason=reason)


def unit_check_in(
    *, unit: ProductUnit, actor: AbstractBaseUser, at: datetime | None = None
) -> Placement:
    """Return a checked-out unit to its reserved slot."""
    return _reserved_slot_step(unit=unit, action="check_in", actor=actor, at=at, reason="")


@transaction.atomic
def unit_check_out_or_in(
    *, unit: ProductUnit, actor: AbstractBaseUser, at: datetime | None = None
) -> Placement:
    """Check a checked-out unit back in, any other unit out (the scan page's automatic mode);
    the placement's ``checked_out_at`` says which it was."""
    status = (
        ProductUnit.objects.select_for_update(of=("self",)).values_list("status", flat=True)
    ).get(pk=unit.pk)
    if status == UnitStatus.CHECKED_OUT:
        return unit_check_in(unit=unit, actor=actor, at=at)
    return unit_check_out(unit=unit, actor=actor, at=at)


@transaction.atomic
def _reserved_slot_step(
    *, unit: ProductUnit, action: str, actor: AbstractBaseUser, at: datetime | None, reason: str
) -> Placement:
    """Check out or in: the placement stays open either way; only its mark changes."""
    done, missing, missing_code = _RESERVED_SLOT_WORDS[action]
    when = check_time(at)
    current = _open_placement(unit)
    if current is None:
        raise ServiceError(missing.format(code=unit.code), code=missing_code, field="unit")
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
    history_save(current, actor=actor, reason=reason or done)
    return current


@transaction.atomic
def unit_remove(
    *, unit: ProductUnit, actor: AbstractBaseUser, reason: str, at: datetime | None = None
) -> ProductUnit:
    """Take a unit out of storage for good (e.g. shipped in a dry shipper); slot is freed."""
    when = check_time(at)
    current = _open_placement(unit)
    transition_apply(item=unit, action="remove", actor=actor, at=when, reason=reason)
    if current is not None:
        _placements_end([current], actor=actor, at=when, reason=reason)
    return unit


def placement_close(
    *, unit: ProductUnit, actor: AbstractBaseUser, at: datetime, reason: str
) -> None:
    """End the unit's open placement, if any (release, discard). Caller holds the transaction."""
    current = _open_placement(unit)
    if current is not None:
        _placements_end([current], actor=actor, at=at, reason=reason)


@transaction.atomic
def units_remove(
    *, removals: list[tuple[str, str]], actor: AbstractBaseUser, at: datetime | None = None
) -> None:
    """``unit_remove`` for many units (code, reason), all or nothing, in a fixed number of
    statements."""
    if not removals:
        return
    at = check_time(at)
    units = {u.code: u for u in ProductUnit.objects.filter(code__in=[c for c, _ in removals])}
    current = open_placements_lock(list(units.values()))
    transitions_apply_bulk(
        steps=[Step(item=units[code], action="remove", reason=why) for code, why in removals],
        actor=actor,
        at=at,
    )
    ending = [(current[units[c].pk], why) for c, why in removals if units[c].pk in current]
    _placements_end([p for p, _ in ending], actor=actor, at=at, reason=[why for _, why in ending])
