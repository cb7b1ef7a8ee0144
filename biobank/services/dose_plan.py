"""The dose plan: body weight, the plan computed from it, the visit's treatment, which units
(or fresh product) to use, and the list of doses due.

Unblinded callers only where a function says so: the treatment and the units name the arm.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch
from django.utils import timezone

from biobank.errors import ConflictError, ServiceError
from biobank.models import (
    ArmSchedule,
    Dose,
    DosePlan,
    DoseStatus,
    DoseUnit,
    Participant,
    Processing,
    ProcessingStatus,
    ProductUnit,
    Treatment,
    Visit,
    millions,
)
from biobank.terms import local_minute

from .audit import history_save
from .lifecycle import TRANSITIONS
from .qc_release import qc_standing_check
from .signatures import require_perm
from .time_order import check_time, enrolment_check
from .trial import weight_check
from .units import unit_release_check

# A unit goes into a dose by its "release" step: from the statuses that step starts from.
RELEASABLE_UNIT = TRANSITIONS["unit"]["release"].sources
# The suggestion tries every combination of at most this many of the oldest units.
SUGGEST_MAX_UNITS = 12


# --- weight and plan -------------------------------------------------------------------------


def treatment_visit_lock(visit: Visit, why: str) -> Visit:
    """The visit, locked for a dose step, or a refusal when it has no treatment."""
    locked = (
        Visit.objects.select_for_update(of=("self",))
        .select_related("participant__study", "visit_type")
        .get(pk=visit.pk)
    )
    if not locked.visit_type.has_treatment:
        raise ServiceError(
            f"{locked.visit_type} has no treatment: {why}.", code="no_treatment", field="visit"
        )
    return locked


def unit_expired_refusal(unit: ProductUnit, field: str, then: str = "") -> ServiceError:
    """The one wording of an expired unit: its code, EXPIRED and the local date."""
    return ServiceError(
        f"{unit.code} EXPIRED on {timezone.localtime(unit.expires_at()):%Y-%m-%d}{then}.",
        code="unit_expired",
        field=field,
    )


def fresh_expired_refusal(processing: Processing, field: str, then: str) -> ServiceError:
    """The one wording of an expired fresh product: its code, EXPIRED and the local time."""
    expires = processing.fresh_expires_at()
    when = f" at {local_minute(expires)}" if expires else ""
    return ServiceError(
        f"Fresh product {processing.code} EXPIRED{when}{then}.", code="fresh_expired", field=field
    )


@transaction.atomic
def visit_weight_record(
    *,
    visit: Visit,
    weight_kg: Decimal,
    actor: AbstractBaseUser,
    measured_at: dt.datetime | None = None,
) -> Visit:
    """Record the body weight measured at a treatment visit; the dose is computed from it."""
    require_perm(actor, "biobank.record_weight", "record body weight")
    given = visit
    visit = treatment_visit_lock(visit, "no weight is needed")
    study = visit.participant.study
    weight = weight_check(study=study, weight_kg=weight_kg)
    when = check_time(measured_at, field="measured_at")
    enrolment_check(
        when,
        visit.participant,
        field="measured_at",
        then=": the weight is measured at the treatment visit",
    )
    if visit.doses.active().exists():
        raise ConflictError(
            f"{visit} already has a dose planned from {visit.weight_kg} kg: cancel it first.",
            code="dose_exists",
            field="weight_kg",
        )
    visit.weight_kg = weight
    visit.weight_measured_at = when
    visit.weight_recorded_by = actor
    history_save(
        visit,
        actor=actor,
        reason="body weight recorded",
        update_fields=["weight_kg", "weight_measured_at", "weight_recorded_by"],
    )
    # The caller's object shows the saved weight too.
    given.weight_kg, given.weight_measured_at = weight, when
    given.weight_recorded_by = actor
    return visit


def visit_plan(visit: Visit) -> DosePlan:
    plan = visit.dose_plan()
    if plan is None:
        raise ServiceError(
            f"Record the body weight of {visit.participant.pseudonym} at {visit.visit_type} "
            "first: the dose is computed from it.",
            code="weight_missing",
            field="weight_kg",
        )
    return plan


# --- what to dose ----------------------------------------------------------------------------


def visit_treatment(visit: Visit) -> str:
    """MSC or PLACEBO for this visit, from the concealed allocation. Unblinded callers only."""
    participant = visit.participant
    if participant.arm_id is None:
        raise ServiceError(
            f"{participant.pseudonym} has no allocation yet.", code="not_allocated", field="visit"
        )
    schedule = ArmSchedule.objects.filter(
        arm_id=participant.arm_id, visit_type_id=visit.visit_type_id
    )
    treatment = schedule.values_list("treatment", flat=True).first()
    if treatment is None:
        raise ServiceError(
            f"{visit.visit_type} has no treatment.", code="no_treatment", field="visit"
        )
    return treatment


def units_eligible(*, participant: Participant, at: dt.datetime | None = None) -> list[ProductUnit]:
    """The participant's OWN QC-released, unexpired, unreserved units, oldest first."""
    at = at or timezone.now()
    units = (
        ProductUnit.objects.filter(
            participant=participant,
            status__in=RELEASABLE_UNIT,
            processing__qc_release__isnull=False,
        )
        .exclude(dose_links__active=True)
        .select_related("participant__study", "processing")
        .order_by("created_at", "code")
    )
    return [u for u in units if not u.is_expired(at)]


def fresh_products_eligible(
    *, participant: Participant, at: dt.datetime | None = None
) -> list[Processing]:
    """Harvested, QC-released products of the participant that may still be dosed fresh."""
    at = at or timezone.now()
    products = (
        Processing.objects.filter(
            participant=participant,
            status=ProcessingStatus.HARVESTED,
            qc_release__isnull=False,
        )
        .exclude(Exists(Dose.objects.active().filter(processing=OuterRef("pk"))))
        .select_related("participant__study")
        .order_by("harvested_at", "code")
    )
    return [p for p in products if not p.fresh_is_expired(at)]


def units_suggest(*, units: Sequence[ProductUnit], plan: DosePlan) -> list[ProductUnit]:
    """Fewest units reaching the target, oldest first, from one processing where possible.

    ``units`` come oldest first. Reaching the target is preferred; failing that, the window's
    lower edge. An empty list means no combination holds enough cells.
    """
    pool = list(units)[:SUGGEST_MAX_UNITS]
    by_processing: dict[int, list[ProductUnit]] = {}
    for unit in pool:
        by_processing.setdefault(unit.processing_id, []).append(unit)
    for needed in (plan.target_cells, plan.min_cells):
        for size in range(1, len(pool) + 1):
            # combinations() of an oldest-first list yields the oldest combination first.
            for group in [*by_processing.values(), pool]:
                for combo in itertools.combinations(group, size):
                    if sum(u.cell_number for u in combo) >= needed:
                        return list(combo)
    return []


@dataclass(frozen=True)
class DoseProposal:
    visit: Visit
    treatment: str
    plan: DosePlan
    units: list[ProductUnit]
    processing: Processing | None
    reason: str


def dose_propose(*, visit: Visit, at: dt.datetime | None = None) -> DoseProposal:
    """What the lab should prepare for this visit. Unblinded callers only."""
    plan = visit_plan(visit)
    treatment = visit_treatment(visit)
    participant = visit.participant
    if treatment == Treatment.PLACEBO:
        return DoseProposal(visit, treatment, plan, [], None, "placebo visit: prepare 0.9 % NaCl")
    eligible = units_eligible(participant=participant, at=at)
    if eligible:
        units = units_suggest(units=eligible, plan=plan)
        if not units:
            held = sum(u.cell_number for u in eligible)
            raise ServiceError(
                f"The QC-released units of {participant.pseudonym} hold {millions(held)} cells "
                f"together, below the accepted {millions(plan.min_cells)}.",
                code="not_enough_cells",
                field="units",
            )
        held = sum(u.cell_number for u in units)
        return DoseProposal(
            visit,
            treatment,
            plan,
            units,
            None,
            f"{len(units)} unit(s) holding {millions(held)} cells for a target of "
            f"{millions(plan.target_cells)}",
        )
    fresh = fresh_products_eligible(participant=participant, at=at)
    if fresh:
        return DoseProposal(visit, treatment, plan, [], fresh[0], f"fresh product {fresh[0].code}")
    raise ServiceError(
        f"{participant.pseudonym} has no QC-released, unexpired product for this visit.",
        code="no_unit",
        field="units",
    )


# --- may it be dosed? ------------------------------------------------------------------------


def _identity_check(product: ProductUnit | Processing, visit: Visit, field: str) -> None:
    """Chain of identity: only the participant's own product is ever dosed to them."""
    if product.participant_id != visit.participant_id:
        raise ServiceError(
            f"Chain of identity: {product.code} belongs to another participant and can never "
            f"be given to {visit.participant.pseudonym}.",
            code="identity_mismatch",
            field=field,
        )


def dose_unit_check(*, unit: ProductUnit, visit: Visit, at: dt.datetime) -> None:
    """Refuse a unit that may not go into this visit's dose (identity, status, reserved, QC,
    expiry)."""
    _identity_check(unit, visit, "units")
    if unit.status not in RELEASABLE_UNIT:
        raise ServiceError(
            f"{unit.code} is {unit.get_status_display().lower()}.",
            code="unit_not_available",
            field="units",
        )
    if DoseUnit.objects.filter(unit=unit, active=True).exists():
        raise ConflictError(
            f"{unit.code} is already reserved for a dose.", code="unit_reserved", field="units"
        )
    unit_release_check(unit)
    if unit.is_expired(at):
        raise unit_expired_refusal(unit, "units", " and cannot be dosed")


def dose_fresh_check(*, processing: Processing, visit: Visit, at: dt.datetime) -> None:
    """Refuse a fresh product that may not be dosed at this visit."""
    _identity_check(processing, visit, "processing")
    if processing.status != ProcessingStatus.HARVESTED:
        raise ServiceError(
            f"{processing.code} is {processing.get_status_display().lower()}: only a harvested, "
            "never frozen product is dosed fresh.",
            code="not_fresh",
            field="processing",
        )
    qc_standing_check(processing, what=f"Fresh product {processing.code}", field="processing")
    if processing.fresh_is_expired(at):
        raise fresh_expired_refusal(processing, "processing", " and cannot be dosed")
    if Dose.objects.active().filter(processing=processing).exists():
        raise ConflictError(
            f"{processing.code} is already reserved for a dose.",
            code="product_reserved",
            field="processing",
        )


# --- due list --------------------------------------------------------------------------------


@dataclass
class DueRow:
    visit: Visit
    dose: Dose | None
    treatment: str
    units: list[ProductUnit]
    todo: str


DUE_DAYS_DEFAULT, DUE_DAYS_MAX = 30, 365


def due_days_parse(raw: str | None) -> int:
    """The due list's look-ahead as asked for (a page's or the API's ``days``): a whole
    number of days from 1 to 365, 30 when not given."""
    if raw is None or not str(raw).strip():
        return DUE_DAYS_DEFAULT
    try:
        days = int(str(raw).strip())
    except ValueError:
        days = 0
    if not 1 <= days <= DUE_DAYS_MAX:
        raise ServiceError(
            f"days must be a whole number from 1 to {DUE_DAYS_MAX}, not '{str(raw)[:20]}'.",
            field="days",
        )
    return days


def doses_due(*, within_days: int = 30, today: dt.date | None = None) -> list[DueRow]:
    """Treatment visits coming up (or overdue) without an administered dose; unblinded."""
    today = today or timezone.localdate()
    visits = (
        Visit.objects.filter(
            visit_type__has_treatment=True,
            scheduled_on__lte=today + dt.timedelta(days=within_days),
            participant__arm__isnull=False,
        )
        .exclude(doses__status=DoseStatus.ADMINISTERED)
        .select_related("participant__study", "visit_type")
        .prefetch_related(
            Prefetch(
                "doses",
                queryset=Dose.objects.active().prefetch_related("units"),
                to_attr="active_doses",
            )
        )
        .order_by("scheduled_on", "participant__pseudonym")
    )
    schedule = {(s.arm_id, s.visit_type_id): s.treatment for s in ArmSchedule.objects.all()}
    rows = []
    for visit in visits:
        treatment = schedule.get((visit.participant.arm_id, visit.visit_type_id), "")
        dose = visit.active_doses[0] if visit.active_doses else None
        units = list(dose.units.all()) if dose else []
        if dose is None:
            if visit.weight_kg is None:
                todo = "record body weight"
            elif treatment == Treatment.MSC:
                try:
                    proposal = dose_propose(visit=visit)
                    units = proposal.units
                    source = (
                        f"thaw {', '.join(u.code for u in units)}"
                        if units
                        else f"fresh {proposal.processing.code if proposal.processing else ''}"
                    )
                    todo = f"prepare dose; {source}"
                except ServiceError:
                    todo = "NO RELEASED PRODUCT"
            else:
                todo = "prepare dose; fill 0.9 % NaCl"
        else:
            todo = {
                DoseStatus.PREPARED: "sign release",
                DoseStatus.RELEASED: "fill saline"
                if treatment == Treatment.PLACEBO
                else "thaw / prepare cells",
                DoseStatus.READY: "dispatch (identity check)",
                DoseStatus.DISPATCHED: "administer (identity check)",
            }.get(dose.status, "")
        rows.append(DueRow(visit, dose, treatment, units, todo))
    return rows
