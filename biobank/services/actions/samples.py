"""Catalogued steps of participants, visits, aspirates and processing."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from biobank.errors import ServiceError
from biobank.identifiers import Kind
from biobank.models import (
    DEFAULT_CRYOPROTECTANT,
    DEFAULT_FREEZING_PROGRAM,
    Anticoagulant,
    Condition,
    ContainerType,
    QcTest,
    Site,
)
from biobank.selectors.participants import visit_of

from .. import aspirates, dose_plan, processing, qc_release, unblinding, units
from ..trial import participant_enroll
from .inputs import (
    AT,
    PASSWORD,
    Action,
    Input,
    calls,
    choices,
    code,
    codes,
    count,
    quarantine_lift,
    reason,
    viability,
)


def _enrol(_: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    site = Site.objects.filter(code=d["site"].strip().upper()).select_related("study").first()
    if site is None:
        raise ServiceError(f"No site {d['site']}.", code="not_found", field="site")
    arm = None
    if d.get("arm"):
        arm = site.study.arms.filter(code=d["arm"].strip().upper()).first()
        if arm is None:
            raise ServiceError(f"No arm {d['arm']}.", code="not_found", field="arm")
    return participant_enroll(
        study=site.study,
        site=site,
        pseudonym=d["pseudonym"],
        enrolled_on=d["enrolled_on"],
        arm=arm,
        weight_kg=d.get("weight_kg"),
        actor=actor,
    )


def _collect(_: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    rest = {k: v for k, v in d.items() if k not in ("participant", "visit")}
    return aspirates.aspirate_collect(
        visit=visit_of(d["participant"], d["visit"]), actor=actor, **rest
    )


def _fill(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    specs = [units.UnitSpec(**spec) for spec in d["units"]]
    return units.units_create(
        processing=item, specs=specs, actor=actor, created_at=d.get("created_at")
    )


def _freezing_run(item: Any, actor: AbstractBaseUser, d: dict[str, Any]) -> Any:
    return units.freezing_run_record(
        processing=item,
        units=d.get("units") or None,  # none named: the processing's units not yet frozen
        started_at=d["started_at"],
        finished_at=d["finished_at"],
        rate_c_per_min=d["rate_c_per_min"],
        program=d["program"] or DEFAULT_FREEZING_PROGRAM,
        actor=actor,
    )


RECEIPT_REASON = "Required to quarantine or reject, or to accept a sample that is not intact."
DECISIONS = (("accept", "Accept"), ("quarantine", "Quarantine"), ("reject", "Reject"))
# What is seen when an aspirate arrives.
RECEIPT = (
    Input(
        "temperature_c",
        "decimal",
        False,
        help="Transport temperature (°C)",
        max_digits=4,
        decimal_places=1,
    ),
    Input("condition", "choice", choices=choices(Condition), default="intact"),
    Input("received_at", "datetime", required=False),
)
UNIT_SPEC = (
    Input("container_type", "choice", choices=choices(ContainerType)),
    count("cell_number"),
    Input("volume_ml", "decimal", max_digits=6, decimal_places=2, min_value=0, max_value=1000),
    Input("cryoprotectant", required=False, max_length=100, default=DEFAULT_CRYOPROTECTANT),
)
CHANGE_ASPIRATE, CHANGE_PROCESSING = "biobank.change_aspirate", "biobank.change_processing"

STEPS: tuple[Action, ...] = (
    Action(
        "participant",
        "enrol",
        "Enrol participant",
        "biobank.add_participant",
        (
            Input("pseudonym", max_length=32),
            Input("site", max_length=16),
            Input("enrolled_on", "date"),
            Input("arm", required=False, max_length=8, help="Only without a randomisation list"),
            Input("weight_kg", "decimal", False, max_digits=5, decimal_places=1),
        ),
        _enrol,
        on_item=False,
    ),
    Action(
        "participant",
        "unblind",
        "Emergency unblinding",
        "biobank.emergency_unblind",
        (PASSWORD, reason(help="The medical reason")),
        calls(unblinding.participant_unblind, "participant"),
    ),
    Action(
        "visit",
        "record_weight",
        "Record body weight",
        "biobank.record_weight",
        # No bounds on the weight here: the service refuses with the trial's plausible range.
        (
            Input("weight_kg", "decimal", max_digits=8, decimal_places=2),
            Input("measured_at", "datetime", required=False),
        ),
        calls(dose_plan.visit_weight_record, "visit"),
        doc="Record the body weight measured at a treatment visit; answers with the dose plan.",
    ),
    Action(
        "aspirate",
        "collect",
        "Collect aspirate",
        "biobank.add_aspirate",
        (
            code("participant", Kind.PARTICIPANT),
            Input("visit", max_length=16, help="Visit type code, e.g. BASELINE or M6"),
            Input(
                "volume_ml", "decimal", max_digits=6, decimal_places=1, min_value=0, max_value=500
            ),
            Input("anticoagulant", "choice", choices=choices(Anticoagulant)),
            Input("collected_at", "datetime"),
            Input("collected_by", max_length=100),
        ),
        _collect,
        on_item=False,
    ),
    Action(
        "aspirate",
        "receive",
        "Receive in lab",
        CHANGE_ASPIRATE,
        (
            Input("decision", "choice", choices=DECISIONS),
            *RECEIPT,
            reason(required=False, help=RECEIPT_REASON),
        ),
        calls(aspirates.aspirate_receive, "aspirate"),
    ),
    Action(
        "aspirate",
        "receive_by_condition",
        "Receive in lab, accept if intact",
        CHANGE_ASPIRATE,
        RECEIPT,
        calls(aspirates.aspirate_receive_by_condition, "aspirate"),
        doc="Receive an arriving aspirate on what is seen: intact and within the study's "
        "transport temperature and time is accepted; anything else quarantines it, with the "
        "numbers as the reason (QA decides later); the receipt scan page.",
    ),
    quarantine_lift(
        "aspirate",
        "lift_quarantine",
        "Lift quarantine",
        aspirates.aspirate_quarantine_lift,
        doc="QA's signed decision: a quarantined aspirate is accepted after all.",
    ),
    Action(
        "aspirate",
        "reject",
        "Reject",
        CHANGE_ASPIRATE,
        (reason(),),
        calls(aspirates.aspirate_reject, "aspirate"),
    ),
    Action(
        "aspirate",
        "start_processing",
        "Start processing",
        "biobank.add_processing",
        (AT,),
        calls(processing.processing_start, "aspirate", at="started_at"),
    ),
    Action(
        "aspirate",
        "discard",
        "Discard",
        CHANGE_ASPIRATE,
        (reason(),),
        calls(aspirates.aspirate_discard, "aspirate"),
    ),
    Action(
        "processing",
        "passage",
        "Record passage",
        "biobank.add_passage",
        (
            Input("number", "int", min_value=0, max_value=30),
            count("cell_count", 10**13),
            viability("viability_pct"),
            Input("passaged_at", "datetime", required=False),
        ),
        calls(processing.passage_record, "processing"),
    ),
    Action(
        "processing",
        "qc_result",
        "Record QC result",
        "biobank.add_qcresult",
        (
            Input("test", "choice", choices=choices(QcTest)),
            Input("result", max_length=200),
            Input("value", "decimal", False, max_digits=10, decimal_places=3),
            Input("passed", "bool"),
            Input("tested_at", "datetime", required=False),
        ),
        calls(processing.qc_result_record, "processing"),
    ),
    Action(
        "processing",
        "harvest",
        "Harvest",
        CHANGE_PROCESSING,
        (
            count("cell_count", 10**13),
            viability("viability_pct"),
            Input("passage", "int", min_value=0, max_value=30),
            Input("harvested_at", "datetime", required=False),
        ),
        calls(processing.processing_harvest, "processing"),
    ),
    Action(
        "processing",
        "fail",
        "Mark failed",
        CHANGE_PROCESSING,
        (reason(),),
        calls(processing.processing_fail, "processing"),
    ),
    Action(
        "processing",
        "qc_release",
        "Sign QC release",
        "biobank.approve_qc_release",
        (PASSWORD, reason(name="comment", required=False)),
        calls(qc_release.processing_qc_release, "processing"),
    ),
    Action(
        "processing",
        "fill_units",
        "Fill units",
        "biobank.add_productunit",
        (Input("units", "rows", of=UNIT_SPEC), Input("created_at", "datetime", required=False)),
        _fill,
        doc="Fill all units of a harvested product in one atomic request.",
    ),
    Action(
        "processing",
        "freezing_run",
        "Record freezing run",
        "biobank.add_freezingrun",
        (
            codes("units", Kind.UNIT, required=False, help="Default: every unit not yet frozen"),
            Input("started_at", "datetime"),
            Input("finished_at", "datetime"),
            Input("rate_c_per_min", "decimal", False, max_digits=4, decimal_places=2, default=-1),
            Input("program", required=False, max_length=100, default=DEFAULT_FREEZING_PROGRAM),
        ),
        _freezing_run,
    ),
)
