"""Load the trial definition and the demo data set from seeds/*.json, idempotently.

Running the loader twice changes nothing: rows are matched on natural keys and only
saved when a value differs, so not even a history row is added the second time.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models, transaction

from biobank.errors import ServiceError
from biobank.models import (
    Arm,
    ArmSchedule,
    Aspirate,
    BoxType,
    Container,
    Participant,
    Site,
    StorageUnit,
    Study,
    VisitType,
)

from .aspirates import aspirate_collect, aspirate_discard, aspirate_receive
from .containers import (
    container_create,
    free_position_suggest,
    storage_unit_create,
    temperature_record,
)
from .dose_plan import visit_treatment, visit_weight_record
from .doses import (
    UnitCount,
    dose_administer,
    dose_dispatch,
    dose_make_ready,
    dose_prepare,
    dose_release,
)
from .processing import passage_record, processing_harvest, processing_start, qc_result_record
from .qc_release import processing_qc_release
from .randomisation import randomisation_in_use
from .storage import unit_store
from .trial import participant_enroll
from .units import UnitSpec, freezing_run_record, unit_transition, units_create

OSLO = ZoneInfo("Europe/Oslo")


def _upsert(
    model: type[models.Model], lookup: dict[str, Any], values: dict[str, Any]
) -> tuple[models.Model, bool]:
    """Create or update one row, saving only when something differs. Returns (row, changed)."""
    obj = model.objects.filter(**lookup).first()
    if obj is None:
        obj = model(**lookup, **values)
        obj._change_reason = "loaded from seeds"
        obj.save()
        return obj, True
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    if changed:
        for name in changed:
            setattr(obj, name, values[name])
        obj._change_reason = "updated from seeds"
        obj.save()
    return obj, bool(changed)


@transaction.atomic
def trial_definition_load(*, data: dict[str, Any]) -> dict[str, int]:
    """Study, sites, visit types, arms and the crossover schedule."""
    counts = {"created_or_changed": 0}
    # Typed as the model stores them, so that reloading unchanged seeds changes nothing.
    study_data = {k: Study._meta.get_field(k).to_python(v) for k, v in data["study"].items()}
    study, changed = _upsert(Study, {"code": study_data.pop("code")}, study_data)
    counts["created_or_changed"] += changed
    for site in data["sites"]:
        values = {k: v for k, v in site.items() if k != "code"}
        _, changed = _upsert(Site, {"code": site["code"]}, {"study": study, **values})
        counts["created_or_changed"] += changed
    visit_types = {}
    for vt in data["visit_types"]:
        values = {k: v for k, v in vt.items() if k != "code"}
        visit_types[vt["code"]], changed = _upsert(
            VisitType, {"study": study, "code": vt["code"]}, values
        )
        counts["created_or_changed"] += changed
    for arm_data in data["arms"]:
        arm, changed = _upsert(
            Arm,
            {"study": study, "code": arm_data["code"]},
            {"name": arm_data["name"], "description": arm_data.get("description", "")},
        )
        counts["created_or_changed"] += changed
        for visit_code, treatment in arm_data["schedule"].items():
            if visit_code not in visit_types:
                raise ServiceError(
                    f"Arm {arm.code} schedules unknown visit {visit_code}.", field="schedule"
                )
            _, changed = _upsert(
                ArmSchedule,
                {"arm": arm, "visit_type": visit_types[visit_code]},
                {"treatment": treatment},
            )
            counts["created_or_changed"] += changed
    return counts


STAGES = [
    "collected",
    "accepted",
    "quarantined",
    "rejected",
    "discarded",
    "in_culture",
    "harvested",
    "frozen",
    "stored",
    "released",
    "thawed",
    "administered",
]


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=OSLO)


@transaction.atomic
def demo_data_load(
    *, data: dict[str, Any], actor: AbstractBaseUser, password: str
) -> dict[str, int]:
    """Participants and aspirates driven through the real services to their demo stage."""
    study = Study.objects.get(code="NCT04749667")
    sites = {s.code: s for s in Site.objects.filter(study=study)}
    lab = next((s for s in sites.values() if s.is_lab), None)
    arms = {a.code: a for a in Arm.objects.filter(study=study)}
    listed = randomisation_in_use(study=study)
    counts = {"participants": 0, "aspirates": 0, "containers": 0}
    counts["containers"] = _load_storage(data, actor)
    tank = StorageUnit.objects.get(name=data["store_units_in"], site=lab)
    retain_vials = int(data.get("retain_vials_per_processing", 0))
    for p in data["participants"]:
        participant = Participant.objects.filter(pseudonym=p["pseudonym"]).first()
        if participant is None:
            participant = participant_enroll(
                study=study,
                site=sites[p["site"]],
                pseudonym=p["pseudonym"],
                enrolled_on=dt.date.fromisoformat(p["enrolled_on"]),
                # The arm comes from the demo randomisation list when one is loaded.
                arm=None if listed else arms[p["arm"]],
                weight_kg=Decimal(str(p["weight_kg"])),
                actor=actor,
            )
            if participant.arm_id != arms[p["arm"]].pk:
                raise ServiceError(
                    f"Demo participant {participant.pseudonym} drew arm {participant.arm} from "
                    f"the list, but the demo expects arm {p['arm']}: seeds are out of step.",
                    code="seed_mismatch",
                )
            counts["participants"] += 1
        for spec in p["aspirates"]:
            visit = participant.visits.select_related("visit_type").get(
                visit_type__code=spec["visit"]
            )
            if Aspirate.objects.filter(visit=visit).exists():
                continue
            _drive_aspirate(
                visit=visit,
                spec=spec,
                actor=actor,
                password=password,
                lab=lab,
                tank=tank,
                retain_vials=retain_vials,
            )
            counts["aspirates"] += 1
    return counts


def _load_storage(data: dict[str, Any], actor: AbstractBaseUser) -> int:
    """Box types, storage units and their container trees; only what is missing is created."""
    created = 0
    box_types = {}
    for bt in data.get("box_types", []):
        values = {k: v for k, v in bt.items() if k != "name"}
        box_types[bt["name"]], _ = _upsert(BoxType, {"name": bt["name"]}, values)
    for su in data.get("storage", []):
        site = Site.objects.get(code=su["site"])
        unit = StorageUnit.objects.filter(site=site, name=su["name"]).first()
        if unit is None:
            unit = storage_unit_create(
                site=site,
                name=su["name"],
                kind=su["kind"],
                min_temperature_c=Decimal(str(su["min_temperature_c"])),
                max_temperature_c=Decimal(str(su["max_temperature_c"])),
                actor=actor,
            )
            created += 1
            start = dt.datetime(2025, 1, 1, 7, tzinfo=OSLO)
            for days, value in enumerate(su.get("readings", [])):
                temperature_record(
                    storage_unit=unit,
                    temperature_c=Decimal(str(value)),
                    at=start + dt.timedelta(days=days),
                    actor=actor,
                    note="demo reading",
                )
        created += _load_containers(su.get("containers", []), unit, None, box_types, actor)
    return created


def _load_containers(
    specs: list[dict[str, Any]],
    storage_unit: StorageUnit,
    parent: Container | None,
    box_types: dict[str, BoxType],
    actor: AbstractBaseUser,
) -> int:
    created = 0
    for spec in specs:
        container = Container.objects.filter(
            storage_unit=storage_unit, parent=parent, name=spec["name"]
        ).first()
        if container is None:
            container = container_create(
                name=spec["name"],
                kind=spec["kind"],
                storage_unit=storage_unit,
                parent=parent,
                box_type=box_types.get(spec.get("box_type", "")),
                actor=actor,
            )
            created += 1
        created += _load_containers(
            spec.get("children", []), storage_unit, container, box_types, actor
        )
    return created


# The receipt of a demo aspirate that stops at receipt: decision, transport °C, condition,
# reason. Every other stage is accepted intact.
_ACCEPTED = ("accept", "20.5", "intact", "")
_TOO_WARM = ("quarantine", "31.5", "temperature", "Transport box above 30 °C on arrival")
DEMO_RECEIPTS: dict[str, tuple[str, str, str, str]] = {
    "quarantined": _TOO_WARM,
    "discarded": _TOO_WARM,
    "rejected": ("reject", "19.0", "leaking", "Bag leaking on arrival"),
}


def _drive_aspirate(
    *,
    visit: Any,
    spec: dict[str, Any],
    actor: AbstractBaseUser,
    lab: Any,
    tank: StorageUnit,
    retain_vials: int,
    password: str,
) -> None:
    stage = spec["stage"]
    if stage not in STAGES:
        raise ServiceError(f"Unknown demo stage '{stage}'.", field="stage")
    level = STAGES.index(stage)
    day = visit.scheduled_on + relativedelta(days=0)
    aspirate = aspirate_collect(
        visit=visit,
        volume_ml=Decimal("60.0"),
        anticoagulant="heparin",
        collected_at=_at(day, 8, 30),
        collected_by="Dr. Demo Collector",
        actor=actor,
    )
    if stage == "collected":
        return
    decision, temperature, condition, reason = DEMO_RECEIPTS.get(stage, _ACCEPTED)
    aspirate_receive(
        aspirate=aspirate,
        decision=decision,
        actor=actor,
        temperature_c=Decimal(temperature),
        condition=condition,
        received_at=_at(day, 14, 10),
        site=lab,
        reason=reason,
    )
    if stage == "discarded":
        aspirate_discard(aspirate=aspirate, actor=actor, reason="Clotted on inspection")
    if stage in DEMO_RECEIPTS:
        return
    if level < STAGES.index("in_culture"):
        return
    processing = processing_start(aspirate=aspirate, actor=actor, started_at=_at(day, 16))
    for number in range(3):
        passage_record(
            processing=processing,
            number=number,
            cell_count=2_000_000 * (4**number),
            viability_pct=Decimal("95.0"),
            actor=actor,
            passaged_at=_at(day + relativedelta(days=7 * number + 6), 10),
        )
    if stage == "in_culture":
        return
    harvest_day = day + relativedelta(days=21)
    processing_harvest(
        processing=processing,
        cell_count=150_000_000,
        viability_pct=Decimal("93.5"),
        passage=2,
        actor=actor,
        harvested_at=_at(harvest_day, 9),
    )
    for test, result, value in [
        ("sterility", "negative", None),
        ("mycoplasma", "negative", None),
        ("endotoxin", "< 0.5 EU/mL", Decimal("0.2")),
        ("immunophenotype", "CD73/90/105 ≥ 98 %; CD34/45/14/19/HLA-DR ≤ 1 %", None),
        ("viability", "93.5 %", Decimal("93.5")),
    ]:
        qc_result_record(
            processing=processing,
            test=test,
            result=result,
            value=value,
            passed=True,
            actor=actor,
            tested_at=_at(harvest_day, 15),
        )
    if stage == "harvested":
        return
    units = units_create(
        processing=processing,
        specs=[
            UnitSpec(container_type="cryobag", cell_number=30_000_000, volume_ml=Decimal("10.0"))
            for _ in range(spec.get("units", 4))
        ]
        + [
            UnitSpec(container_type="cryovial", cell_number=1_000_000, volume_ml=Decimal("1.0"))
            for _ in range(retain_vials)
        ],
        actor=actor,
        created_at=_at(harvest_day, 11),
    )
    freezing_run_record(
        processing=processing,
        units=units,
        started_at=_at(harvest_day, 11, 30),
        finished_at=_at(harvest_day, 13, 30),
        actor=actor,
    )
    if stage == "frozen":
        return
    for unit in units:
        where = free_position_suggest(storage_unit=tank, container_type=unit.container_type)
        unit_store(
            unit=unit,
            container=where.box,
            position=where.position,
            actor=actor,
            at=_at(harvest_day, 14),
        )
    if stage == "stored":
        return
    processing_qc_release(processing=processing, actor=actor, password=password)
    if stage == "stored":
        return
    _drive_dose(visit=visit, unit=units[0], stage=stage, actor=actor, password=password)


def _drive_dose(
    *, visit: Any, unit: Any, stage: str, actor: AbstractBaseUser, password: str
) -> None:
    """Release the first unit: as a blinded dose at the next MSC visit, or plainly."""
    participant = visit.participant
    msc_visit = (
        participant.visits.filter(visit_type__order__gt=visit.visit_type.order)
        .select_related("visit_type", "participant")
        .order_by("visit_type__order")
        .first()
    )
    if msc_visit is None or visit_treatment(msc_visit) != "MSC":
        # Released plainly: after its QC release signature (now), in time order.
        for action, reached in [
            ("release", "released"),
            ("thaw", "thawed"),
            ("administer", "administered"),
        ]:
            unit_transition(unit=unit, action=action, actor=actor)
            if reached == stage:
                return
        return
    weight = participant.weight_kg or Decimal("70")
    visit_weight_record(visit=msc_visit, weight_kg=weight, actor=actor)
    dose = dose_prepare(visit=msc_visit, actor=actor)  # the suggested units
    dose_release(dose=dose, actor=actor, password=password)
    if stage == "released":
        return
    # Counts that give the target at 95 % viability (as far as each bag holds).
    links = list(dose.dose_units.select_related("unit"))
    share = Decimal(dose.target_cells or 0) / len(links) / Decimal("0.95")
    dose_make_ready(
        dose=dose,
        actor=actor,
        unit_counts=[
            UnitCount(link.unit.code, min(int(share), link.unit.cell_number), Decimal("95.0"))
            for link in links
        ],
    )
    if stage == "thawed":
        return
    dose_dispatch(dose_scan=dose.code, participant_scan=participant.code, actor=actor)
    dose_administer(
        dose_scan=dose.code,
        participant_scan=participant.code,
        actor=actor,
        administered_by="Dr. Demo Neurologist",
    )
