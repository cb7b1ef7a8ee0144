"""Catalogued steps of doses: prepare, sign, make ready, and the bedside."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from biobank.identifiers import Kind
from biobank.models import DEFAULT_ROUTE
from biobank.selectors.participants import visit_of

from .. import doses
from .inputs import AT, PASSWORD, Action, Input, Run, calls, code, codes, count, reason, viability

PREPARE, RELEASE, DISPATCH, ADMINISTER = (
    "biobank.prepare_dose",
    "biobank.release_dose",
    "biobank.dispatch_dose",
    "biobank.administer_dose",
)


def _prepare(_: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    chosen = [*d.get("units", []), *([d["unit"]] if d.get("unit") else [])]
    return doses.dose_prepare(
        visit=visit_of(d["participant"], d["visit"]),
        actor=actor,
        units=chosen,
        processing=d.get("processing"),
    )


def _make_ready(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    counts = [
        doses.UnitCount(u["unit"], u["post_thaw_cell_count"], u["post_thaw_viability_pct"])
        for u in d.get("units", [])
    ]
    rest = {k: v for k, v in d.items() if k != "units"}
    return doses.dose_make_ready(dose=item, actor=actor, unit_counts=counts, **rest)


def _bedside(step: Callable[..., Any]) -> Run:
    """Dispatch and administration: the dose scan defaults to the dose the step is on, and a
    scan of another dose is refused (the service checks it)."""

    def run(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
        scan = d.get("dose_scan") or item.code
        return step(actor=actor, dose=item, **{**d, "dose_scan": scan})

    return run


SCANS = (
    Input("participant_scan", help="The participant ID as scanned", max_length=200),
    Input(
        "dose_scan",
        required=False,
        help="The dose label as scanned (default: this dose)",
        max_length=200,
    ),
    AT,
)
UNIT_COUNT = (
    Input("unit", max_length=80),
    count("post_thaw_cell_count"),
    viability("post_thaw_viability_pct"),
)

STEPS: tuple[Action, ...] = (
    Action(
        "dose",
        "prepare",
        "Prepare dose",
        PREPARE,
        (
            code("participant", Kind.PARTICIPANT),
            Input("visit", max_length=16),
            codes(
                "units",
                Kind.UNIT,
                required=False,
                help="Stored units to draw on (default: the suggestion)",
                most=20,
            ),
            code("unit", Kind.UNIT, required=False, help="One unit"),
            code(
                "processing",
                Kind.PROCESSING,
                required=False,
                help="A harvested product dosed fresh (never frozen)",
            ),
        ),
        _prepare,
        on_item=False,
        doc="Plan the visit's dose from its recorded weight; MSC draws on the participant's "
        "own units (default: the suggestion) or a fresh product.",
    ),
    Action(
        "dose",
        "release",
        "Sign dose release",
        RELEASE,
        (PASSWORD,),
        calls(doses.dose_release, "dose"),
    ),
    Action(
        "dose",
        "deviation",
        "Sign a documented deviation",
        RELEASE,
        (PASSWORD, reason(help="Why the dose may fall outside its window")),
        calls(doses.dose_deviation_sign, "dose"),
        doc="QA signs a documented deviation: the dose may then fall outside its window.",
    ),
    Action(
        "dose",
        "make_ready",
        "Thaw / fill syringe",
        PREPARE,
        (
            Input("ready_at", "datetime", required=False),
            count(
                "post_thaw_cell_count",
                required=False,
                help="One unit or a fresh product: the cells counted",
            ),
            viability("post_thaw_viability_pct", required=False),
            Input("units", "rows", False, of=UNIT_COUNT, max_items=20),
            Input("saline_lot", required=False, max_length=40, default="", help="Placebo"),
        ),
        _make_ready,
        doc="Thaw the units / take the fresh product / fill saline; the expiry is computed.",
    ),
    Action("dose", "cancel", "Cancel dose", PREPARE, (reason(),), calls(doses.dose_cancel, "dose")),
    Action(
        "dose",
        "dispatch",
        "Dispatch",
        DISPATCH,
        SCANS,
        _bedside(doses.dose_dispatch),
        doc="Chain-of-identity check (dose scan vs participant scan), expiry check, dispatch.",
    ),
    Action(
        "dose",
        "administer",
        "Record administration",
        ADMINISTER,
        (
            *SCANS,
            Input("administered_by", required=False, max_length=200, default=""),
            Input("route", required=False, max_length=30, default=DEFAULT_ROUTE),
        ),
        _bedside(doses.dose_administer),
        doc="Bedside identity check, expiry check, then the administration is recorded.",
    ),
)
