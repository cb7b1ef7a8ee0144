"""Rack-scanner import: compare a rack read with a box, and make the system match it."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from biobank.errors import ServiceError
from biobank.models import Container, Placement, ProductUnit
from biobank.rack_csv import RackCell, RackRead
from biobank.selectors.storage import units_with_location

from .containers import position_parse
from .storage import open_placements_lock, slot_make, slots_write, units_remove
from .time_order import check_time


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
    for row, col in box_type.positions():
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
    units_remove(
        removals=[
            (diff.system_unit, f"Rack scan of {box.code}: not found at {diff.position}")
            for diff in displaced
        ],
        actor=actor,
        at=when,
    )
    units = {u.code: u for u in ProductUnit.objects.filter(code__in=incoming)}
    # Every tube's old slot is freed before any is taken, so tubes can swap places in the box.
    current = open_placements_lock(list(units.values()))
    slots = []
    for code, diff in incoming.items():
        unit = units[code]
        slots.append(
            slot_make(
                unit,
                box,
                diff.row,
                diff.column,
                diff.position,
                before=current.get(unit.pk),
                source="rack scan",
            )
        )
    slots_write(slots, actor=actor, at=when, end_reason=f"rack scan of {box.code}")
    stored = sum(1 for slot in slots if slot.action == "store")
    return {
        "stored": stored,
        "moved": len(slots) - stored,
        "removed": len(displaced),
        "unchanged": sum(1 for d in diffs if d.state == "match"),
    }
