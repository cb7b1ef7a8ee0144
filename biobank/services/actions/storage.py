"""Catalogued steps of product units and containers (storage)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from biobank.errors import ServiceError
from biobank.identifiers import Kind

from .. import storage, units
from ..lifecycle import TRANSITIONS
from .inputs import AT, Action, Input, Run, calls, code, quarantine_lift, reason

CHANGE_UNIT = "biobank.change_productunit"
POSITION = Input("position", required=False, max_length=8, default="", help="Empty: next free")
CONTAINER = code("container", Kind.BOX, Kind.CONTAINER, help="Box or container ID (BX…/CT…)")
PLACEMENT = (code("unit", Kind.UNIT), Input("position", required=False, max_length=8, default=""))


def _transition(action: str) -> Run:
    """A unit step that is a plain lifecycle transition."""
    return lambda item, actor, d: units.unit_transition(unit=item, action=action, actor=actor, **d)


def _put(service: Any) -> Run:
    """Store or move: an empty position means the next free one."""

    def run(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
        return service(unit=item, actor=actor, **{**d, "position": d.get("position") or None})

    return run


def _box_store(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    rows = d["placements"]
    try:
        return storage.units_store(
            container=item,
            items=[storage.StoreItem(p["unit"], p.get("position") or None) for p in rows],
            actor=actor,
            at=d.get("at"),
        )
    except ServiceError as exc:
        if exc.index is not None:  # name the refused row: its unit and its place in the list
            where = f"placements.{exc.index}"
            exc.message = f"{rows[exc.index]['unit'].code} ({where}): {exc.message}"
            exc.field = f"{where}.{exc.field or 'unit'}"
        raise


STEPS: tuple[Action, ...] = (
    Action(
        "unit", "store", "Store", CHANGE_UNIT, (CONTAINER, POSITION, AT), _put(storage.unit_store)
    ),
    Action(
        "unit",
        "move",
        "Move",
        CHANGE_UNIT,
        (CONTAINER, POSITION, reason(required=False), AT),
        _put(storage.unit_move),
    ),
    Action(
        "unit",
        "put",
        "Store or move",
        CHANGE_UNIT,
        (CONTAINER, POSITION, reason(required=False), AT),
        _put(storage.unit_put),
        doc="Put a unit into a box whatever its place now: a frozen unit is stored, a stored "
        "or quarantined one moved (the scan pages' store).",
    ),
    Action(
        "unit",
        "put_undo",
        "Undo the last store or move",
        CHANGE_UNIT,
        (AT,),
        calls(storage.unit_put_undo, "unit"),
    ),
    Action(
        "unit",
        "check_out",
        "Check out (keep slot)",
        CHANGE_UNIT,
        (reason(required=False), AT),
        calls(storage.unit_check_out, "unit"),
    ),
    Action(
        "unit", "check_in", "Check in", CHANGE_UNIT, (AT,), calls(storage.unit_check_in, "unit")
    ),
    Action(
        "unit",
        "check_out_or_in",
        "Check out or in",
        CHANGE_UNIT,
        (AT,),
        calls(storage.unit_check_out_or_in, "unit"),
        doc="Check a checked-out unit back in, any other unit out (the scan page's automatic "
        "mode).",
    ),
    Action(
        "unit",
        "remove",
        "Remove from storage",
        CHANGE_UNIT,
        (reason(), AT),
        calls(storage.unit_remove, "unit"),
    ),
    Action(
        "unit", "quarantine", "Quarantine", CHANGE_UNIT, (reason(), AT), _transition("quarantine")
    ),
    quarantine_lift(
        "unit",
        "lift_quarantine",
        "Lift quarantine",
        units.unit_quarantine_lift,
        doc="QA's signed decision: the unit returns to the status it had before the quarantine "
        "(stored in its place, frozen, or released for its dose).",
    ),
    *(
        Action(
            "unit",
            name,
            label,
            CHANGE_UNIT,
            (reason(TRANSITIONS["unit"][name].needs_reason), AT),
            _transition(name),
        )
        for name, label in (
            ("release", "Release"),
            ("return_to_stock", "Return to stock"),
            ("discard", "Discard"),
        )
    ),
    Action(
        "container",
        "store",
        "Store units",
        CHANGE_UNIT,
        (Input("placements", "rows", of=PLACEMENT, max_items=1000), AT),
        _box_store,
        doc="Store many units into this box (or container), all or nothing.",
    ),
)
