"""Release for delayed injection: QC release, dose preparation, identity checks, unblinding.

Blinding: nothing here puts the arm or MSC/saline into an event, a history row, a label or a
message that a blinded user can receive. Doses for MSC and placebo walk the same steps.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from biobank.identifiers import Kind
from biobank.models import (
    ArmSchedule,
    Dose,
    DoseStatus,
    IdentityCheck,
    IdentityStage,
    Participant,
    Processing,
    ProcessingStatus,
    ProductUnit,
    QcRelease,
    QcTest,
    SignatureMeaning,
    Treatment,
    Unblinding,
    UnitStatus,
    Visit,
)

from .errors import ConflictError, NotFound, ServiceError
from .identifiers import identifier_allocate
from .lifecycle import check_time, event_record, transition_apply
from .signatures import require_perm, signature_sign
from .units import unit_release_check, unit_transition

REQUIRED_QC = [
    QcTest.STERILITY,
    QcTest.MYCOPLASMA,
    QcTest.ENDOTOXIN,
    QcTest.IMMUNOPHENOTYPE,
    QcTest.VIABILITY,
]
MIN_VIABILITY_PCT = Decimal("70")
MAX_SHELF_LIFE = dt.timedelta(hours=24)
RELEASABLE_UNIT = (UnitStatus.STORED, UnitStatus.CHECKED_OUT)
ACTIVE_DOSE = [s for s in DoseStatus.values if s != DoseStatus.CANCELLED]


# --- QC release ------------------------------------------------------------------------------


def qc_release_problems(processing: Processing) -> list[str]:
    """What stands between a product and its QC release (empty when it may be signed)."""
    problems = []
    if processing.status not in (ProcessingStatus.HARVESTED, ProcessingStatus.CRYOPRESERVED):
        problems.append(f"the product is {processing.get_status_display().lower()}")
    latest = {}
    for qc in processing.qc_results.order_by("tested_at", "id"):
        latest[qc.test] = qc
    for test in REQUIRED_QC:
        result = latest.get(test)
        if result is None:
            problems.append(f"no {QcTest(test).label} result")
        elif not result.passed:
            problems.append(f"{QcTest(test).label} failed ({result.result})")
    viability = latest.get(QcTest.VIABILITY)
    if (
        viability is not None
        and viability.value is not None
        and viability.value < MIN_VIABILITY_PCT
    ):
        problems.append(f"viability {viability.value} % is below {MIN_VIABILITY_PCT} %")
    return problems


@transaction.atomic
def processing_qc_release(
    *, processing: Processing, actor: AbstractBaseUser, password: str, comment: str = ""
) -> QcRelease:
    """Sign the product's QC results as meeting the release specification."""
    require_perm(actor, "biobank.approve_qc_release", "sign a QC release")
    processing = Processing.objects.select_for_update(of=("self",)).get(pk=processing.pk)
    if QcRelease.objects.filter(processing=processing).exists():
        raise ConflictError(f"{processing.code} is already QC-released.", code="already_released")
    problems = qc_release_problems(processing)
    if problems:
        raise ServiceError(
            f"{processing.code} cannot be QC-released: {'; '.join(problems)}.",
            code="qc_not_met",
            field="qc_results",
        )
    signature = signature_sign(
        user=actor, password=password, meaning=SignatureMeaning.QC_RELEASE, record=processing.code
    )
    release = QcRelease.objects.create(processing=processing, signature=signature, comment=comment)
    event_record(
        item=processing,
        participant_id=processing.participant_id,
        item_code=processing.code,
        item_kind="processing",
        action="qc_release",
        from_status=processing.status,
        to_status=processing.status,
        actor=actor,
        at=signature.signed_at,
        reason=str(signature),
    )
    return release


# --- doses -----------------------------------------------------------------------------------


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


def units_eligible(*, participant: Participant) -> QuerySet[ProductUnit]:
    """The participant's OWN units that may be released: never another person's."""
    return (
        ProductUnit.objects.filter(
            participant=participant,
            status__in=RELEASABLE_UNIT,
            processing__qc_release__isnull=False,
        )
        .exclude(doses__status__in=ACTIVE_DOSE)
        .select_related("aspirate__visit__visit_type")
        .order_by("created_at", "code")
    )


@dataclass(frozen=True)
class DoseProposal:
    visit: Visit
    treatment: str
    unit: ProductUnit | None
    reason: str


def dose_propose(*, visit: Visit) -> DoseProposal:
    treatment = visit_treatment(visit)
    if treatment == Treatment.PLACEBO:
        return DoseProposal(visit, treatment, None, "placebo visit: prepare 0.9 % NaCl")
    unit = units_eligible(participant=visit.participant).first()
    if unit is None:
        raise ServiceError(
            f"{visit.participant.pseudonym} has no QC-released unit in storage for this visit.",
            code="no_unit",
            field="unit",
        )
    return DoseProposal(
        visit, treatment, unit, f"oldest QC-released unit of {visit.participant.pseudonym}"
    )


@transaction.atomic
def dose_prepare(*, visit: Visit, actor: AbstractBaseUser, unit: ProductUnit | None = None) -> Dose:
    """Plan the dose of a treatment visit; for MSC, reserve the participant's own unit."""
    require_perm(actor, "biobank.prepare_dose", "prepare doses")
    visit = (
        Visit.objects.select_for_update(of=("self",))
        .select_related("participant", "visit_type")
        .get(pk=visit.pk)
    )
    if not visit.visit_type.has_treatment:
        raise ServiceError(f"{visit.visit_type} has no treatment.", field="visit")
    if Dose.objects.filter(visit=visit).exclude(status=DoseStatus.CANCELLED).exists():
        raise ConflictError(f"{visit} already has a dose.", code="duplicate", field="visit")
    treatment = visit_treatment(visit)
    if treatment == Treatment.PLACEBO:
        if unit is not None:
            raise ServiceError("This visit's dose is not made from a unit.", field="unit")
    else:
        unit = unit or dose_propose(visit=visit).unit
        assert unit is not None
        unit = ProductUnit.objects.select_for_update(of=("self",)).get(pk=unit.pk)
        if unit.participant_id != visit.participant_id:
            raise ServiceError(
                f"Chain of identity: {unit.code} belongs to another participant and can never "
                f"be given to {visit.participant.pseudonym}.",
                code="identity_mismatch",
                field="unit",
            )
        if unit.status not in RELEASABLE_UNIT:
            raise ServiceError(f"{unit.code} is {unit.get_status_display().lower()}.", field="unit")
        if Dose.objects.filter(unit=unit, status__in=ACTIVE_DOSE).exists():
            raise ConflictError(f"{unit.code} is already reserved for a dose.", field="unit")
        unit_release_check(unit)
    now = timezone.now()
    dose = Dose.objects.create(
        code=identifier_allocate(kind=Kind.DOSE),
        participant=visit.participant,
        visit=visit,
        treatment=treatment,
        unit=unit,
        prepared_at=now,
        prepared_by=actor,
    )
    _dose_event(dose, "prepare", "", actor, now)
    return dose


def _dose_event(
    dose: Dose, action: str, from_status: str, actor: AbstractBaseUser, at: dt.datetime
) -> None:
    # Same shape for MSC and saline: no unit code, no treatment.
    event_record(
        item=dose,
        participant_id=dose.participant_id,
        item_code=dose.code,
        item_kind="dose",
        action=action,
        from_status=from_status,
        to_status=dose.status,
        actor=actor,
        at=at,
    )


@transaction.atomic
def dose_release(*, dose: Dose, actor: AbstractBaseUser, password: str) -> Dose:
    """QA signs the dose's release; an MSC dose releases its unit from the biobank."""
    require_perm(actor, "biobank.release_dose", "release doses")
    dose = Dose.objects.select_for_update(of=("self",)).select_related("unit").get(pk=dose.pk)
    if dose.status != DoseStatus.PREPARED:
        raise ServiceError(
            f"{dose.code} is {dose.get_status_display().lower()}.",
            code="invalid_transition",
            field="status",
        )
    if dose.unit is not None:
        unit_transition(unit=dose.unit, action="release", actor=actor, reason=f"for {dose.code}")
    signature = signature_sign(
        user=actor, password=password, meaning=SignatureMeaning.DOSE_RELEASE, record=dose.code
    )
    transition_apply(
        item=dose,
        action="release",
        actor=actor,
        at=signature.signed_at,
        changes={"release_signature": signature},
    )
    return dose


@transaction.atomic
def dose_make_ready(
    *,
    dose: Dose,
    actor: AbstractBaseUser,
    ready_at: dt.datetime | None = None,
    expires_at: dt.datetime,
    post_thaw_cell_count: int | None = None,
    post_thaw_viability_pct: Decimal | None = None,
) -> Dose:
    """Thaw the unit (MSC) or fill saline (placebo) into the syringe; set the expiry."""
    require_perm(actor, "biobank.prepare_dose", "prepare doses")
    ready_at = check_time(ready_at, field="ready_at")
    if expires_at is None or expires_at <= ready_at:
        raise ServiceError(
            "The expiry must be after the thaw/preparation time.", field="expires_at"
        )
    if expires_at - ready_at > MAX_SHELF_LIFE:
        raise ServiceError(
            f"The expiry is more than {MAX_SHELF_LIFE} after thawing.", field="expires_at"
        )
    dose = Dose.objects.select_for_update(of=("self",)).select_related("unit").get(pk=dose.pk)
    changes: dict[str, object] = {"ready_at": ready_at, "expires_at": expires_at}
    if dose.unit is not None:
        if post_thaw_cell_count is None or int(post_thaw_cell_count) <= 0:
            raise ServiceError(
                "The post-thaw cell count is required.", field="post_thaw_cell_count"
            )
        if post_thaw_viability_pct is None:
            raise ServiceError(
                "The post-thaw viability is required.", field="post_thaw_viability_pct"
            )
        viability = Decimal(str(post_thaw_viability_pct))
        if not (Decimal(0) <= viability <= Decimal(100)):
            raise ServiceError(
                "Viability must be between 0 and 100 %.", field="post_thaw_viability_pct"
            )
        if viability < MIN_VIABILITY_PCT:
            raise ServiceError(
                f"Post-thaw viability {viability} % is below {MIN_VIABILITY_PCT} %: the dose "
                "cannot be used.",
                code="viability_too_low",
                field="post_thaw_viability_pct",
            )
        changes.update(
            post_thaw_cell_count=int(post_thaw_cell_count), post_thaw_viability_pct=viability
        )
        unit_transition(unit=dose.unit, action="thaw", actor=actor, at=ready_at)
    transition_apply(item=dose, action="make_ready", actor=actor, at=ready_at, changes=changes)
    return dose


# --- chain of identity -----------------------------------------------------------------------


class IdentityMismatch(ServiceError):
    status_code = 409


def identity_check(
    *, dose_scan: str, participant_scan: str, stage: str, actor: AbstractBaseUser
) -> tuple[IdentityCheck, Dose | None]:
    """Compare a dose scan with a participant scan and record the result, match or not.

    Runs in its own transaction so that a refused mismatch is still on record.
    """
    from biobank.scanning.resolve import scan_resolve

    if stage not in IdentityStage.values:
        raise ServiceError("Unknown identity-check stage.", field="stage")
    dose: Dose | None = None
    expected = ""
    matched = False
    try:
        dose = scan_resolve(raw=dose_scan, viewer=actor, kinds={Kind.DOSE}).item
        expected = dose.participant.code
        participant = scan_resolve(
            raw=participant_scan, viewer=actor, kinds={Kind.PARTICIPANT}
        ).item
        matched = participant.pk == dose.participant_id
        if matched:
            message = f"{dose.code} matches {participant.pseudonym} ({participant.code})."
        else:
            message = (
                f"IDENTITY MISMATCH: {dose.code} is for {dose.participant.pseudonym} "
                f"({expected}), but the scanned participant is {participant.pseudonym} "
                f"({participant.code}). Do not give this dose."
            )
    except ServiceError as exc:
        message = f"IDENTITY NOT CONFIRMED: {exc.message}"
    with transaction.atomic():
        check = IdentityCheck.objects.create(
            dose=dose,
            stage=stage,
            dose_scan=(dose_scan or "")[:80],
            participant_scan=(participant_scan or "")[:80],
            expected_participant=expected,
            matched=matched,
            message=message[:300],
            checked_by=actor,
            checked_at=timezone.now(),
        )
    return check, dose


def _confirmed(dose_scan: str, participant_scan: str, stage: str, actor: AbstractBaseUser) -> Dose:
    check, dose = identity_check(
        dose_scan=dose_scan, participant_scan=participant_scan, stage=stage, actor=actor
    )
    if not check.matched or dose is None:
        raise IdentityMismatch(check.message, code="identity_mismatch", field="participant_scan")
    return dose


def _refuse_expired(dose: Dose, when: dt.datetime) -> None:
    if dose.expires_at is not None and when > dose.expires_at:
        raise ServiceError(
            f"{dose.code} EXPIRED at {timezone.localtime(dose.expires_at):%Y-%m-%d %H:%M}: "
            "it must not be dispatched or administered.",
            code="expired",
            field="dose",
        )


def dose_dispatch(
    *, dose_scan: str, participant_scan: str, actor: AbstractBaseUser, at: dt.datetime | None = None
) -> Dose:
    """Before the dose leaves the lab: identity check, expiry check, then dispatch."""
    require_perm(actor, "biobank.administer_dose", "dispatch doses")
    dose = _confirmed(dose_scan, participant_scan, IdentityStage.DISPATCH, actor)
    with transaction.atomic():
        when = check_time(at)
        _refuse_expired(dose, when)
        transition_apply(
            item=dose, action="dispatch", actor=actor, at=when, changes={"dispatched_at": when}
        )
    return dose


def dose_administer(
    *,
    dose_scan: str,
    participant_scan: str,
    actor: AbstractBaseUser,
    administered_by: str = "",
    route: str = "intrathecal",
    at: dt.datetime | None = None,
) -> Dose:
    """At the bedside: identity check again, expiry check, then record the administration."""
    require_perm(actor, "biobank.administer_dose", "record administrations")
    dose = _confirmed(dose_scan, participant_scan, IdentityStage.ADMINISTRATION, actor)
    if route != dose.route:
        raise ServiceError(f"This dose is for {dose.route} use only.", field="route")
    with transaction.atomic():
        when = check_time(at)
        _refuse_expired(dose, when)
        by = (administered_by or "").strip() or actor.get_username()
        transition_apply(
            item=dose,
            action="administer",
            actor=actor,
            at=when,
            changes={"administered_at": when, "administered_by": by[:200]},
            data={"route": route, "administered_by": by[:200]},
        )
        if dose.unit_id is not None:
            unit_transition(
                unit=ProductUnit.objects.get(pk=dose.unit_id),
                action="administer",
                actor=actor,
                at=when,
            )
        visit = dose.visit
        if visit.done_on is None:
            visit.done_on = timezone.localdate(when)
            visit._change_reason = "dose administered"
            visit._history_user = actor
            visit.save(update_fields=["done_on"])
    return dose


@transaction.atomic
def dose_cancel(*, dose: Dose, actor: AbstractBaseUser, reason: str) -> Dose:
    """Cancel a dose; a released unit goes back to stock, a thawed one is discarded."""
    require_perm(actor, "biobank.prepare_dose", "cancel doses")
    transition_apply(item=dose, action="cancel", actor=actor, reason=reason)
    if dose.unit_id is not None:
        unit = ProductUnit.objects.get(pk=dose.unit_id)
        if unit.status == UnitStatus.RELEASED:
            unit_transition(
                unit=unit,
                action="return_to_stock",
                actor=actor,
                reason=f"{dose.code} cancelled: {reason}",
            )
        elif unit.status == UnitStatus.THAWED:
            unit_transition(
                unit=unit,
                action="discard",
                actor=actor,
                reason=f"thawed for {dose.code}, which was cancelled: {reason}",
            )
    return dose


# --- emergency unblinding --------------------------------------------------------------------


@dataclass(frozen=True)
class UnblindingResult:
    record: Unblinding
    arm: str
    schedule: list[tuple[str, str]]


@transaction.atomic
def participant_unblind(
    *, participant: Participant, actor: AbstractBaseUser, password: str, reason: str
) -> UnblindingResult:
    """Reveal one participant's allocation in an emergency: authorised, reasoned, signed."""
    require_perm(actor, "biobank.emergency_unblind", "unblind participants")
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise ServiceError(
            "Give the medical reason for unblinding (at least 10 characters).", field="reason"
        )
    if participant.arm_id is None:
        raise ServiceError(f"{participant.pseudonym} has no allocation yet.", field="participant")
    signature = signature_sign(
        user=actor, password=password, meaning=SignatureMeaning.UNBLINDING, record=participant.code
    )
    record = Unblinding.objects.create(participant=participant, reason=reason, signature=signature)
    event_record(
        item=None,
        participant_id=participant.pk,
        item_code=participant.code,
        item_kind="participant",
        action="emergency_unblinding",
        from_status="",
        to_status="unblinded",
        actor=actor,
        at=signature.signed_at,
        reason=reason,
    )
    arm = participant.arm
    schedule = [
        (s.visit_type.name, Treatment(s.treatment).label)
        for s in ArmSchedule.objects.filter(arm=arm).select_related("visit_type")
    ]
    return UnblindingResult(record, f"{arm} – {arm.name}", schedule)


# --- due list --------------------------------------------------------------------------------


@dataclass
class DueRow:
    visit: Visit
    dose: Dose | None
    treatment: str
    unit: ProductUnit | None
    todo: str


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
        .select_related("participant", "visit_type")
        .prefetch_related(
            Prefetch(
                "doses",
                queryset=Dose.objects.filter(status__in=ACTIVE_DOSE).select_related("unit"),
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
        unit = dose.unit if dose else None
        if dose is None:
            if treatment == Treatment.MSC:
                candidate = units_eligible(participant=visit.participant).first()
                unit = candidate
                todo = f"prepare dose; thaw {candidate.code}" if candidate else "NO RELEASED UNIT"
            else:
                todo = "prepare dose; fill 0.9 % NaCl"
        else:
            todo = {
                DoseStatus.PREPARED: "sign release",
                DoseStatus.RELEASED: "thaw unit" if unit else "fill saline",
                DoseStatus.READY: "dispatch (identity check)",
                DoseStatus.DISPATCHED: "administer (identity check)",
                DoseStatus.CANCELLED: "cancelled: prepare a new dose",
            }.get(dose.status, "")
        rows.append(DueRow(visit, dose, treatment, unit, todo))
    return rows


def dose_by_code(code: str) -> Dose:
    dose = Dose.objects.filter(code=code).first()
    if dose is None:
        raise NotFound(f"No dose {code} is registered.", field="dose")
    return dose
