from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from biobank.errors import ServiceError
from biobank.identifiers import Kind
from biobank.models import (
    DEFAULT_CRYOPROTECTANT,
    DEFAULT_FREEZING_PROGRAM,
    Aspirate,
    ContainerType,
    FreezingRun,
    Placement,
    Processing,
    ProcessingStatus,
    ProductUnit,
    UnitStatus,
    millions,
)
from biobank.visibility import kind_of_model

from .audit import event_new, event_record_bulk, history_save
from .identifiers import identifier_allocate, identifiers_allocate
from .lifecycle import (
    TRANSITIONS,
    Step,
    status_before,
    transition_apply,
    transition_check,
    transitions_apply_bulk,
)
from .qc_release import qc_standing_check
from .signatures import require_perm, signature_sign, signed_reason
from .time_order import check_time, not_before

MAX_UNITS_PER_PROCESSING = 200
# Steps that need a container or position go through services.storage instead.
PLACEMENT_STEPS = frozenset({"store", "move", "check_out", "check_in", "remove"})
LEAVES_STORAGE = frozenset({"release", "discard"})
# Lifting a quarantine (of a unit or an aspirate) is QA's decision, signed.
LIFT_QUARANTINE = "biobank.lift_quarantine"


@dataclass(frozen=True)
class UnitSpec:
    container_type: str
    cell_number: int
    volume_ml: Decimal
    cryoprotectant: str = DEFAULT_CRYOPROTECTANT


@transaction.atomic
def units_create(
    *,
    processing: Processing,
    specs: list[UnitSpec],
    actor: AbstractBaseUser,
    created_at: datetime | None = None,
) -> list[ProductUnit]:
    """Fill the harvested product into units (bags or vials), each with its own UN… ID."""
    processing = Processing.objects.select_for_update(of=("self",)).get(pk=processing.pk)
    if processing.status != ProcessingStatus.HARVESTED:
        raise ServiceError(
            f"{processing.code} is {processing.status}; units are filled from a harvested product.",
            code="invalid_transition",
            field="processing",
        )
    if not specs:
        raise ServiceError("At least one unit is required.", field="units")
    if len(specs) > MAX_UNITS_PER_PROCESSING:
        raise ServiceError(f"At most {MAX_UNITS_PER_PROCESSING} units at once.", field="units")
    total = 0
    for index, spec in enumerate(specs):
        if spec.container_type not in ContainerType.values:
            raise ServiceError(
                f"Unit {index + 1}: container type must be one of "
                f"{', '.join(ContainerType.values)}.",
                field="container_type",
            )
        if int(spec.cell_number) <= 0:
            raise ServiceError(
                f"Unit {index + 1}: cell number must be above 0, not {spec.cell_number}.",
                field="cell_number",
            )
        if not (Decimal(0) < Decimal(str(spec.volume_ml)) <= Decimal(1000)):
            raise ServiceError(
                f"Unit {index + 1}: volume must be above 0 and at most 1000 mL, not "
                f"{spec.volume_ml} mL.",
                field="volume_ml",
            )
        total += int(spec.cell_number)
    harvested, left = processing.harvest_cell_count or 0, processing.cells_left()
    if total > left:
        raise ServiceError(
            f"The units hold {millions(total)} cells ({total:,}), more than the "
            f"{millions(left)} ({left:,}) left of the {millions(harvested)} harvested in "
            f"{processing.code} ({millions(harvested - left)} already in units or fresh doses).",
            code="exceeds_harvest",
            field="cell_number",
        )
    when = check_time(created_at, field="created_at")
    not_before(
        when, processing.harvested_at, field="created_at", what=f"the harvest of {processing.code}"
    )
    codes = identifiers_allocate(kind=Kind.UNIT, count=len(specs))
    units = [
        ProductUnit(
            code=code,
            processing=processing,
            aspirate_id=processing.aspirate_id,
            participant_id=processing.participant_id,
            container_type=spec.container_type,
            cell_number=int(spec.cell_number),
            volume_ml=Decimal(str(spec.volume_ml)),
            cryoprotectant=spec.cryoprotectant,
            created_at=when,
        )
        for code, spec in zip(codes, specs, strict=True)
    ]
    ProductUnit.objects.bulk_create(units)
    for unit in units:
        unit._change_reason = "unit filled"
        unit._history_user = actor
    ProductUnit.history.bulk_history_create(units)
    event_record_bulk(
        [
            event_new(
                item=unit,
                action="create",
                actor=actor,
                at=when,
                data={"processing": processing.code, "cell_number": unit.cell_number},
            )
            for unit in units
        ]
    )
    return units


@transaction.atomic
def freezing_run_record(
    *,
    processing: Processing,
    started_at: datetime,
    finished_at: datetime,
    actor: AbstractBaseUser,
    rate_c_per_min: Decimal = Decimal("-1"),
    program: str = DEFAULT_FREEZING_PROGRAM,
    units: list[ProductUnit] | None = None,
) -> FreezingRun:
    """Record a finished controlled-rate freezing run: units frozen, product cryopreserved.

    Without ``units``, the run freezes every unit of the processing not yet frozen (created).
    """
    # Locked first, as a fill locks it: a run and a fill of one product queue here instead of
    # each holding what the other waits for (the audit chain's head, the product).
    processing = Processing.objects.select_for_update(of=("self",)).get(pk=processing.pk)
    started_at = check_time(started_at, field="started_at")
    finished_at = check_time(finished_at, field="finished_at")
    not_before(
        started_at,
        processing.harvested_at,
        field="started_at",
        what=f"the harvest of {processing.code}",
    )
    if finished_at < started_at:
        raise ServiceError("The run cannot finish before it started.", field="finished_at")
    rate = Decimal(str(rate_c_per_min))
    if rate >= 0:
        raise ServiceError("A freezing rate is negative (°C/min), e.g. -1.", field="rate_c_per_min")
    if units is None:
        units = list(processing.units.filter(status=UnitStatus.CREATED).order_by("code"))
    if not units:
        raise ServiceError("A freezing run needs at least one unit.", field="units")
    foreign = [u.code for u in units if u.processing_id != processing.pk]
    if foreign:
        raise ServiceError(
            f"Units {', '.join(foreign)} are not from {processing.code}.", field="units"
        )
    run = FreezingRun(
        code=identifier_allocate(kind=Kind.FREEZING_RUN),
        processing=processing,
        program=program,
        rate_c_per_min=rate,
        started_at=started_at,
        finished_at=finished_at,
        operator=actor,
    )
    history_save(run, actor=actor, reason="freezing run recorded")
    transitions_apply_bulk(
        steps=[
            Step(
                item=unit,
                action="freeze",
                changes={"freezing_run": run},
                data={"freezing_run": run.code},
            )
            for unit in units
        ],
        actor=actor,
        at=finished_at,
        field="finished_at",
    )
    if processing.status == ProcessingStatus.HARVESTED:
        transition_apply(
            item=processing,
            action="cryopreserve",
            actor=actor,
            at=finished_at,
            data={"freezing_run": run.code},
            field="finished_at",
        )
        transition_apply(
            item=processing.aspirate,
            action="complete_processing",
            actor=actor,
            at=finished_at,
            field="finished_at",
        )
    return run


def unit_transition(
    *,
    unit: ProductUnit,
    action: str,
    actor: AbstractBaseUser,
    reason: str = "",
    at: datetime | None = None,
    location: str = "",
) -> ProductUnit:
    """Apply a plain lifecycle step (quarantine, release, thaw, discard...) to a unit.

    Steps that take the unit out of storage for good also free its slot.
    """
    from .storage import placement_close  # storage builds on units; import late

    if action in PLACEMENT_STEPS:
        raise ServiceError(
            f"Use the storage services to {action.replace('_', ' ')} a unit: it needs a place.",
            code="use_storage_service",
            field="action",
        )
    if action in TRANSITIONS["unit"] and TRANSITIONS["unit"][action].signed:
        raise ServiceError(
            f"To {action.replace('_', ' ')} a unit is a signed step: use its own service.",
            code="use_signed_service",
            field="action",
        )
    with transaction.atomic():
        if action == "release":
            unit_release_check(unit)
        event = transition_apply(
            item=unit, action=action, actor=actor, reason=reason, at=at, location=location
        )
        if action in LEAVES_STORAGE:
            assert event is not None  # a unit's step always writes its event
            placement_close(unit=unit, actor=actor, at=event.at, reason=action)
    return unit


def unit_quarantine_lift_target(unit: ProductUnit) -> str:
    """Where a lifted quarantine leaves a unit: the status it had before the quarantine when
    that still holds (released: out of storage and still reserved by a live dose), else as its
    place says: stored only with an open placement, otherwise frozen."""
    placed = Placement.objects.open().filter(unit=unit).exists()
    before = status_before(item=unit, action="quarantine")
    reserved = unit.dose_links.filter(active=True).exists()
    if before == UnitStatus.RELEASED and not placed and reserved:
        return UnitStatus.RELEASED
    return UnitStatus.STORED if placed else UnitStatus.FROZEN


@transaction.atomic
def quarantine_lift_apply(
    *,
    item: Aspirate | ProductUnit,
    action: str,
    actor: AbstractBaseUser,
    password: str,
    reason: str,
) -> None:
    """Lifting a quarantine, for any item: QA's permission, a reason worth signing, the table's
    check on the locked row, the e-signature (21 CFR 11.50/11.200), then the step dated by the
    signature; its custody event references the signature."""
    require_perm(actor, LIFT_QUARANTINE, "lift quarantines")
    reason = signed_reason(reason, ask="the reason for lifting the quarantine")
    kind = kind_of_model(item)
    locked = type(item).objects.select_for_update(of=("self",)).get(pk=item.pk)
    transition_check(kind=kind, action=action, item=locked, reason=reason)
    # A unit goes back to where it was; an aspirate to the table's one target.
    target = unit_quarantine_lift_target(locked) if isinstance(locked, ProductUnit) else None
    signature = signature_sign(
        user=actor, password=password, meaning=TRANSITIONS[kind][action].signed, record=item.code
    )
    transition_apply(
        item=item,
        action=action,
        actor=actor,
        at=signature.signed_at,
        reason=reason,
        target=target,
        signature=signature,
    )


def unit_quarantine_lift(
    *, unit: ProductUnit, actor: AbstractBaseUser, password: str, reason: str
) -> ProductUnit:
    """QA lifts a unit's quarantine: it returns to the status it had before the quarantine
    (``unit_quarantine_lift_target``)."""
    quarantine_lift_apply(
        item=unit, action="lift_quarantine", actor=actor, password=password, reason=reason
    )
    return unit


def unit_release_check(unit: ProductUnit) -> None:
    """A unit may leave the biobank only if its product's QC release is signed and stands."""
    qc_standing_check(unit.processing, what=unit.code, field="unit")


def unit_discard(*, unit: ProductUnit, actor: AbstractBaseUser, reason: str) -> ProductUnit:
    return unit_transition(unit=unit, action="discard", actor=actor, reason=reason)


__all__ = [
    "UnitSpec",
    "UnitStatus",
    "freezing_run_record",
    "unit_discard",
    "unit_quarantine_lift",
    "unit_transition",
    "units_create",
]
